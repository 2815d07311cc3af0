"""The exported model takes numbers as users hold them: a column pandas reads as int64 (a
batch without gaps) and as float64 (with gaps), through every way MLflow users score a
model: pyfunc, `mlflow models predict` with CSV and JSON, and `mlflow models serve`.

Before, the signature typed those columns double, and MLflow refuses int64 for double
("Can not safely convert int64 to float64"): new penguins read with pd.read_csv failed.
The processes these tests start (`mlflow models predict`, `mlflow models serve` on
127.0.0.1) are real; the serving ones are in the slow suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from support.processes import free_port, stop_process_group, wait_until_answering
from support.project import BIN_DIR, PROJECT_DIR, run_command

from trainflow.ml.data import split_dataset
from trainflow.ml.features import FeatureSpec, PreprocessingOptions
from trainflow.ml.train import export, train

MLFLOW = str(BIN_DIR / "mlflow")
# `mlflow models serve` starts uvicorn from PATH: this environment's
ENV = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
TARGET = "species"
# Whole numbers in every row: read from a CSV without gaps, pandas makes them int64.
WHOLE = ["flipper_length_mm", "body_mass_g"]
SPEC = FeatureSpec(numeric=["bill_length_mm", "bill_depth_mm", *WHOLE], categorical=["island", "sex"])


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a pyfunc model prepends its code directory to sys.path: undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], np.ndarray]:
    """A penguin model exported as train_model exports it; two CSV files of new rows as a
    user holds them (integers without gaps, and with one); the probabilities the in-memory
    pipeline gives for the rows without gaps."""
    root = tmp_path_factory.mktemp("serving")
    penguins = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv")
    trainval, test = split_dataset(penguins, TARGET, 0.2, 42, TARGET)
    result = train(
        trainval,
        TARGET,
        "classification",
        "random_forest",
        {"n_estimators": 20, "random_state": 0},
        SPEC,
        PreprocessingOptions(),
        0.2,
        42,
        TARGET,
    )
    model = export(result, root / "model")
    # as a user's own file holds them: 181, not 181.0
    rows = test.dropna().drop(columns=[TARGET]).head(8).astype({c: "int64" for c in WHOLE})
    files = {"no_gaps": root / "no_gaps.csv", "gaps": root / "gaps.csv"}
    rows.to_csv(files["no_gaps"], index=False)
    rows.assign(body_mass_g=rows["body_mass_g"].mask(rows.index == rows.index[0])).to_csv(files["gaps"], index=False)
    expected = result.pipeline.predict_proba(rows.astype({c: "float64" for c in WHOLE})).to_numpy()
    return model, files, expected


def as_read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_the_files_hold_what_users_hold(served: tuple[Path, dict[str, Path], np.ndarray]) -> None:
    _, files, _ = served
    assert all(pd.api.types.is_integer_dtype(as_read(files["no_gaps"])[c]) for c in WHOLE)
    assert pd.api.types.is_float_dtype(as_read(files["gaps"])["body_mass_g"])


@pytest.mark.parametrize("which", ["no_gaps", "gaps"])
def test_pyfunc_takes_a_csv_as_pandas_reads_it(served: tuple[Path, dict[str, Path], np.ndarray], which: str) -> None:
    model, files, expected = served
    predicted = mlflow.pyfunc.load_model(str(model)).predict(as_read(files[which])).to_numpy()
    if which == "no_gaps":
        np.testing.assert_allclose(predicted, expected)
    assert predicted.shape == expected.shape and np.allclose(predicted.sum(axis=1), 1.0)


def test_the_signature_documents_every_column(served: tuple[Path, dict[str, Path], np.ndarray]) -> None:
    """Numbers and text are open-typed (MLflow's any: the model's first step casts them and
    refuses what is neither), and every column is required."""
    from mlflow.models import Model

    model, _, _ = served
    schema = Model.load(str(model)).get_input_schema()
    types = {c.name: getattr(c.type, "name", str(c.type)) for c in schema.inputs}
    assert types == {
        "bill_length_mm": "Any",
        "bill_depth_mm": "Any",
        "flipper_length_mm": "Any",
        "body_mass_g": "Any",
        "island": "Any",
        "sex": "Any",
    }
    assert all(c.required for c in schema.inputs)


def test_text_columns_take_what_clients_send(served: tuple[Path, dict[str, Path], np.ndarray]) -> None:
    """A number or true/false sent for a text column is its text (an unknown label, not a
    type error); a text column with no value in the batch is missing values (pandas makes
    it float64, which MLflow's string type refused); a list is refused in one line."""
    model, files, _ = served
    pyfunc = mlflow.pyfunc.load_model(str(model))
    rows = as_read(files["no_gaps"])
    baseline = pyfunc.predict(rows.assign(island="no such island")).to_numpy()
    np.testing.assert_allclose(pyfunc.predict(rows.assign(island=3)).to_numpy(), baseline)
    empty_sex = pyfunc.predict(rows.assign(sex=np.nan)).to_numpy()
    assert empty_sex.shape == baseline.shape and np.allclose(empty_sex.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match=r"^column 'island' must hold text; got \['Dream'\]$"):
        pyfunc.predict(rows.assign(island=[["Dream"]] * len(rows)))


def test_rows_with_a_repeated_column_are_one_line_in_batch_predict(
    served: tuple[Path, dict[str, Path], np.ndarray],
) -> None:
    from trainflow.errors import DataError
    from trainflow.ml.inference import predict_table

    model, files, _ = served
    rows = as_read(files["no_gaps"])
    with pytest.raises(DataError, match="name more than one column 'island': give every column a unique name"):
        predict_table(model, pd.concat([rows, rows[["island"]]], axis=1))


def json_body(frame: pd.DataFrame) -> dict[str, object]:
    """``dataframe_split`` as a client writes it: integers as JSON integers, gaps as null."""
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["no_gaps", "gaps"])
@pytest.mark.parametrize("content", ["csv", "json"])
def test_mlflow_models_predict_takes_csv_and_json(
    served: tuple[Path, dict[str, Path], np.ndarray], tmp_path: Path, which: str, content: str
) -> None:
    model, files, expected = served
    source = files[which]
    if content == "json":
        source = tmp_path / f"{which}.json"
        source.write_text(json.dumps(json_body(as_read(files[which]))))
    out = tmp_path / "predictions.json"
    result = run_command(
        [
            MLFLOW,
            "models",
            "predict",
            "-m",
            str(model),
            "-i",
            str(source),
            "-t",
            content,
            "-o",
            str(out),
            "--env-manager",
            "local",
        ],
        ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = pd.DataFrame(json.loads(out.read_text())["predictions"]).to_numpy()
    assert predictions.shape == expected.shape
    if which == "no_gaps":
        np.testing.assert_allclose(predictions, expected)


@pytest.mark.slow
def test_mlflow_models_serve_takes_json_with_and_without_gaps(
    served: tuple[Path, dict[str, Path], np.ndarray], tmp_path: Path
) -> None:
    """REST with JSON (`dataframe_split`, MLflow's documented body) both ways; a text in a
    number column is a 400 naming the column, a missing column a 400 naming it (MLflow's
    schema check); no rows get no predictions; a number for a text column is its text."""
    model, files, expected = served
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [MLFLOW, "models", "serve", "-m", str(model), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=ENV,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/ping", server, tmp_path / "serve.log")
        for which in ("no_gaps", "gaps"):
            status, answer = post(f"{base}/invocations", json_body(as_read(files[which])))
            assert status == 200, answer
            predictions = pd.DataFrame(answer["predictions"]).to_numpy()
            assert predictions.shape == expected.shape
            if which == "no_gaps":
                np.testing.assert_allclose(predictions, expected)
        text = as_read(files["no_gaps"]).astype({"body_mass_g": object})
        text.loc[text.index[0], "body_mass_g"] = "heavy"
        status, answer = post(f"{base}/invocations", json_body(text))
        # MLflow's server says the model refused the input and returns the model's reason in the trace
        assert status == 400 and answer["error_code"] == "BAD_REQUEST", answer
        assert "column 'body_mass_g' must hold numbers; got 'heavy'" in answer["stack_trace"]
        rows = as_read(files["no_gaps"])
        status, answer = post(f"{base}/invocations", json_body(rows.head(0)))  # no rows: no predictions
        assert status == 200 and answer["predictions"] == [], answer
        status, answer = post(f"{base}/invocations", json_body(rows.assign(island=3, sex=None)))
        assert status == 200 and len(answer["predictions"]) == len(rows), answer
        status, answer = post(f"{base}/invocations", json_body(rows.drop(columns=["island"])))
        assert status == 400 and "Model is missing inputs ['island']" in answer["message"], answer
    finally:
        stop_process_group(server)
        log.close()


def post(url: str, body: dict[str, object]) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
