"""Reading, checking and splitting tables (trainflow.ml.data, no MLflow)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import pytest

from trainflow.errors import DataError
from trainflow.ml.data import class_counts, infer_task, read_table, require_columns, resolve_task, split_dataset

PENGUINS = Path(__file__).resolve().parents[2] / "data" / "penguins.csv"
TARGET = "species"


@pytest.fixture
def penguins() -> pd.DataFrame:
    """The raw penguins table as pandas reads it."""
    return pd.read_csv(PENGUINS)


def test_read_table_csv_matches_pandas(penguins: pd.DataFrame) -> None:
    """A CSV is read into the same frame pandas produces."""
    pd.testing.assert_frame_equal(read_table(PENGUINS), penguins)


def test_read_table_parquet_matches_csv(tmp_path: Path, penguins: pd.DataFrame) -> None:
    """A Parquet copy of the table reads back as the same frame as the CSV."""
    parquet = tmp_path / "penguins.parquet"
    penguins.to_parquet(parquet, index=False)
    pd.testing.assert_frame_equal(read_table(parquet), read_table(PENGUINS))


def test_read_table_detects_parquet_by_content(tmp_path: Path, penguins: pd.DataFrame) -> None:
    """A Parquet file misnamed ``.csv`` is still read as Parquet (chosen by content)."""
    disguised = tmp_path / "really_parquet.csv"
    penguins.to_parquet(disguised, index=False)
    assert disguised.read_bytes()[:4] == b"PAR1"
    pd.testing.assert_frame_equal(read_table(disguised), penguins)


def test_read_table_empty_file(tmp_path: Path) -> None:
    """An empty file is a DataError saying it is empty."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)


def test_a_header_only_table_is_refused_for_learning_and_read_for_scoring(tmp_path: Path) -> None:
    """No rows to learn from is an error; no rows to score is zero predictions (as the server answers [])."""
    header = tmp_path / "header.csv"
    header.write_text("bill_length_mm,island\n")
    with pytest.raises(DataError, match="0 rows and 2 columns: a training table needs rows"):
        read_table(header)
    frame = read_table(header, allow_empty=True)
    assert list(frame.columns) == ["bill_length_mm", "island"] and len(frame) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_read_table_garbage_bytes(tmp_path: Path, seed: int) -> None:
    """Random binary bytes are a DataError naming the file, not a pandas exception."""
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(random.Random(seed).randbytes(4096))
    with pytest.raises(DataError, match="garbage.csv"):
        read_table(garbage)


def test_read_table_garbage_with_parquet_magic(tmp_path: Path) -> None:
    """Bytes starting with the Parquet magic but otherwise garbage are a DataError."""
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1" + random.Random(3).randbytes(1000))
    with pytest.raises(DataError, match="starts like Parquet but has no Parquet footer"):
        read_table(fake)


def test_read_table_header_only(tmp_path: Path) -> None:
    """A CSV with a header but no rows cannot be trained on: DataError naming 0 rows."""
    header_only = tmp_path / "header.csv"
    header_only.write_text("species,island\n")
    with pytest.raises(DataError, match="0 rows"):
        read_table(header_only)


def test_read_table_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is a DataError naming it."""
    with pytest.raises(DataError, match="nope.csv"):
        read_table(tmp_path / "nope.csv")


def test_require_columns_names_the_missing(penguins: pd.DataFrame) -> None:
    """The error names every missing column and the caller, and not the present ones."""
    with pytest.raises(DataError) as caught:
        require_columns(penguins, ["species", "wingspan", "beak_colour"], "unit_test")
    message = str(caught.value)
    assert message.startswith("unit_test:")
    assert "'wingspan'" in message and "'beak_colour'" in message
    assert "'species'" not in message


def test_require_columns_accepts_present(penguins: pd.DataFrame) -> None:
    """All columns present: returns None without raising."""
    assert require_columns(penguins, list(penguins.columns), "unit_test") is None


@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.33])
def test_split_sizes_follow_test_size(penguins: pd.DataFrame, test_size: float) -> None:
    """The test part has ceil(n * test_size) rows, the two parts partition the data."""
    trainval, test = split_dataset(penguins, TARGET, test_size, 42, TARGET)
    assert len(test) == math.ceil(len(penguins) * test_size)
    assert len(trainval) + len(test) == len(penguins)
    merged = pd.concat([trainval, test]).sort_values(list(penguins.columns)).reset_index(drop=True)
    expected = penguins.sort_values(list(penguins.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, expected)


def test_split_stratification_keeps_proportions(penguins: pd.DataFrame) -> None:
    """Each class's test count is within one row of its share of test_size."""
    test_size = 0.2
    trainval, test = split_dataset(penguins, TARGET, test_size, 7, TARGET)
    total = penguins[TARGET].value_counts()
    in_test = test[TARGET].value_counts()
    assert set(in_test.index) == set(total.index)
    for label, count in total.items():
        assert abs(in_test[label] - count * test_size) <= 1, label


def test_split_deterministic_for_seed(penguins: pd.DataFrame) -> None:
    """The same seed gives the same split; another seed gives a different one."""
    first_trainval, first_test = split_dataset(penguins, TARGET, 0.2, 42, TARGET)
    again_trainval, again_test = split_dataset(penguins, TARGET, 0.2, 42, TARGET)
    pd.testing.assert_frame_equal(first_test, again_test)
    pd.testing.assert_frame_equal(first_trainval, again_trainval)
    _, other_test = split_dataset(penguins, TARGET, 0.2, 43, TARGET)
    assert not first_test.equals(other_test)


def test_split_unstratified(penguins: pd.DataFrame) -> None:
    """stratify_by=None still splits into the configured sizes."""
    trainval, test = split_dataset(penguins, TARGET, 0.3, 0, None)
    assert len(test) == math.ceil(len(penguins) * 0.3)
    assert len(trainval) == len(penguins) - len(test)


def test_split_drops_rows_without_target(penguins: pd.DataFrame) -> None:
    """Rows whose target is missing appear in neither part."""
    frame = penguins.copy()
    frame.loc[[0, 10, 200], TARGET] = None
    marked = frame.assign(row_id=range(len(frame)))
    trainval, test = split_dataset(marked, TARGET, 0.2, 42, TARGET)
    assert len(trainval) + len(test) == len(frame) - 3
    kept = set(trainval["row_id"]) | set(test["row_id"])
    assert kept.isdisjoint({0, 10, 200})
    assert trainval[TARGET].notna().all() and test[TARGET].notna().all()


def test_split_restores_whole_number_classes_read_as_floats() -> None:
    """A class column 0/1/2 with gaps is read as floats (1.0); once the gaps are dropped a
    classification split gives integers back, and a regression target stays as it was."""
    frame = pd.DataFrame({"x": range(20), "label": [0, 1, 2, None] * 5})
    assert frame["label"].dtype == "float64"
    trainval, test = split_dataset(frame, "label", 0.25, 0, None, classes=True)
    assert trainval["label"].dtype == "int64" and test["label"].dtype == "int64"
    assert set(trainval["label"]) | set(test["label"]) == {0, 1, 2}
    kept_float, _ = split_dataset(frame, "label", 0.25, 0, None)
    assert kept_float["label"].dtype == "float64"
    halves = pd.DataFrame({"x": range(8), "label": [0.5, 1.0, 1.5, 2.0] * 2})
    assert split_dataset(halves, "label", 0.25, 0, None, classes=True)[0]["label"].dtype == "float64"


def test_split_missing_stratify_column(penguins: pd.DataFrame) -> None:
    """A stratify column absent from the data is a DataError naming it."""
    with pytest.raises(DataError, match="'colony'"):
        split_dataset(penguins, TARGET, 0.2, 42, "colony")


def test_split_missing_target_column(penguins: pd.DataFrame) -> None:
    """A target absent from the data is a DataError naming it."""
    with pytest.raises(DataError, match="'genus'"):
        split_dataset(penguins, "genus", 0.2, 42, None)


def test_split_single_row_class_under_stratification(penguins: pd.DataFrame) -> None:
    """A class with one row cannot be stratified: DataError naming the column."""
    frame = penguins.copy()
    frame.loc[0, TARGET] = "Emperor"
    with pytest.raises(DataError, match=f"cannot split on '{TARGET}'"):
        split_dataset(frame, TARGET, 0.2, 42, TARGET)


def test_split_too_few_labelled_rows(penguins: pd.DataFrame) -> None:
    """With fewer than two labelled rows the split is refused."""
    frame = penguins.head(5).copy()
    frame.loc[1:, TARGET] = None
    with pytest.raises(DataError, match="only 1 rows"):
        split_dataset(frame, TARGET, 0.2, 42, None)


def test_class_counts(penguins: pd.DataFrame) -> None:
    """Counts per class, keyed by text, sum to the labelled rows, sorted by class."""
    counts = class_counts(penguins, TARGET)
    expected = {str(k): int(v) for k, v in penguins[TARGET].value_counts().items()}
    assert counts == expected
    assert list(counts) == sorted(counts)
    assert sum(counts.values()) == len(penguins)


def test_class_counts_numeric_labels_and_missing() -> None:
    """Integer classes become string keys; missing targets are not counted."""
    frame = pd.DataFrame({"y": pd.array([1, 0, 1, None, 1], dtype="Int64"), "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert class_counts(frame, "y") == {"0": 1, "1": 3}


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_read_table_names_another_delimiter(tmp_path: Path, penguins: pd.DataFrame, separator: str) -> None:
    path = tmp_path / "penguins.csv"
    penguins.to_csv(path, sep=separator, index=False)
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert f"looks {separator!r}-separated" in message and "comma-separated" in message and "Parquet" in message


def test_read_table_names_a_non_utf8_encoding(tmp_path: Path, penguins: pd.DataFrame) -> None:
    path = tmp_path / "penguins.csv"
    frame = penguins.head(20).copy()
    frame["island"] = "Bíscoe"
    frame.to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(DataError) as error:
        read_table(path)
    assert "is not UTF-8 text" in str(error.value) and "b'\\xed'" in str(error.value)
    assert "encoding='latin-1'" in str(error.value)


@pytest.mark.parametrize(
    ("encoding", "named"),
    [
        ("utf-16", "UTF-16"),
        ("utf-16-le", "UTF-16-LE"),
        ("utf-16-be", "UTF-16-BE"),
        ("utf-32", "UTF-32"),
        ("utf-32-le", "UTF-32-LE"),
    ],
)
def test_read_table_names_a_utf16_or_utf32_file(
    tmp_path: Path, penguins: pd.DataFrame, encoding: str, named: str
) -> None:
    """A wide Unicode CSV, with a BOM or without one (its NUL bytes give it away), is named as
    such with a hint that reads it correctly: not latin-1, which would keep a NUL beside every character."""
    path = tmp_path / "penguins.csv"
    frame = penguins.head(20).copy()
    frame["island"] = "Bíscoe"
    frame.to_csv(path, index=False, encoding=encoding)
    with pytest.raises(DataError) as error:
        read_table(path)
    message = str(error.value)
    assert f"penguins.csv is {named} text, not UTF-8" in message and "re-save it as UTF-8" in message
    assert "latin-1" not in message
    hinted = message.split("encoding=", 1)[1].split(")", 1)[0].strip("'")
    pd.testing.assert_frame_equal(pd.read_csv(path, encoding=hinted), frame)


def test_read_table_errors_name_the_setting_they_were_given(tmp_path: Path) -> None:
    """Errors tell the user to fix the setting the caller read the file from, not always data.uri."""
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="point batch_predict.input at a file with data"):
        read_table(empty, setting="batch_predict.input")
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"PAR1" + random.Random(3).randbytes(1000))
    with pytest.raises(DataError, match="check batch_predict.input$"):
        read_table(fake, setting="batch_predict.input")


def test_a_test_set_of_one_row_is_one_data_error() -> None:
    """Five rows split 80/20 leave one test row, on which R2 and AUC are undefined: refuse
    it in one line instead of recording NaN metrics (and a warning per permutation)."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [1.5, 2.5, 2.0, 4.5, 5.0]})
    with pytest.raises(DataError, match=r"test set would have 1 row\(s\) of 5.*split.test_size"):
        split_dataset(frame, "y", test_size=0.2, random_seed=0, stratify_by=None)


@pytest.mark.parametrize(
    ("values", "task", "why"),
    [
        (["Adelie", "Gentoo", None], "classification", "holds text: 2 classes"),
        ([True, False, True], "classification", "holds true/false values: 2 classes"),
        ([0, 1, 1, 0], "classification", "holds 2 distinct whole numbers"),
        ([1.0, 2.0, None, 5.0], "classification", "holds 3 distinct whole numbers"),  # classes read with a gap
        ([0.5, 1.25, 3.0], "regression", "holds numbers with fractions"),
        (list(range(21)), "regression", "holds 21 distinct whole numbers (more than 20: a quantity)"),
        (list(range(20)), "classification", "holds 20 distinct whole numbers (at most 20: classes)"),
    ],
)
def test_the_task_follows_from_the_target(values: list[object], task: str, why: str) -> None:
    inferred, reason = infer_task(pd.Series(values, name="y"))
    assert inferred == task and why in reason
    resolved, said = resolve_task("auto", pd.Series(values, name="y"))
    assert resolved == task and said.startswith("the target 'y' ") and "set model.task to choose" in said


def test_a_configured_task_is_kept_and_dates_are_refused() -> None:
    assert resolve_task("regression", pd.Series(["a", "b"])) == ("regression", "model.task=regression")
    with pytest.raises(DataError, match="holds dates"):
        infer_task(pd.Series(pd.to_datetime(["2024-01-01", "2024-02-01"]), name="when"))
