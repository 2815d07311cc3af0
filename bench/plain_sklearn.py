"""The yardstick for section 6: the same job as the pipeline, written as a data scientist
writes it for one known table in one process, with scikit-learn, pandas and MLflow only
(no trainflow code, no tracking, no store, no checks, no plots): load the CSV, drop rows
without a target, split off the test set and a validation set, fit, export with
`mlflow.sklearn.save_model` (skops), load the export back and score it.

    python bench/plain_sklearn.py --table T.csv --estimator hist_gradient_boosting [--out DIR]

The table is tests/support/synthetic.py's (its column names are this script's knowledge of
the table, as a hand-written pipeline's are): for each estimator the encodings a careful
user picks, the same kinds trainflow's plan picks, so that the comparison is of the
workflow around the fit, not of two different models.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "target"
NUMERIC = ["signal_1", "signal_2", "noise_1", "noise_2"]
LOW_CARDINALITY = ["color", "region"]
HIGH_CARDINALITY = ["account"]
TEXT = "notes"
DATE = "event_date"
# What skops must trust to load these pipelines back (all scikit-learn's own)
TRUSTED = [
    "numpy.dtype",
    "numpy.float64",
    "functools.partial",
    "sklearn.utils.validation.check_array",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
]


def with_date_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The date column as days since 1970, month and day of week (before the pipeline: a
    plain script parses its dates once, and its model then takes the parsed columns)."""
    parsed = pd.to_datetime(frame[DATE], errors="coerce")
    return frame.drop(columns=[DATE]).assign(
        days=(parsed - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1),
        month=parsed.dt.month.astype("float64"),
        weekday=parsed.dt.day_of_week.astype("float64"),
    )


def build(estimator: str, columns: list[str]):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder

    numbers = NUMERIC + ["days", "month", "weekday"]
    high = [c for c in HIGH_CARDINALITY if c in columns]
    # The generated text has fewer than 30 distinct words: nothing to reduce (trainflow's
    # TextComponents passes such a TF-IDF on as it is too); the dense layout densifies it.
    text = TfidfVectorizer(max_features=100)
    if estimator == "hist_gradient_boosting":
        categories = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan, max_categories=254
        )
        model = HistGradientBoostingClassifier(random_state=42, categorical_features=list(range(len(LOW_CARDINALITY))))
        numeric, sparse_threshold = "passthrough", 0.0
    elif estimator == "random_forest":
        categories = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-2, encoded_missing_value=-1)
        model = RandomForestClassifier(n_estimators=100, random_state=42, max_features="sqrt")
        numeric, sparse_threshold = "passthrough", 0.3
    else:
        categories = make_pipeline(
            SimpleImputer(strategy="most_frequent"),
            OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=50),
        )
        model = LogisticRegression(max_iter=1000)
        numeric, sparse_threshold = make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), 1.0
    parts = [("categories", categories, LOW_CARDINALITY)]
    if high:
        parts.append(("target", TargetEncoder(), high))
    # a column named alone (not in a list) reaches TF-IDF as the 1-D strings it takes
    parts += [("numbers", numeric, numbers), ("text", text, TEXT)]
    return Pipeline([("preprocess", ColumnTransformer(parts, sparse_threshold=sparse_threshold)), ("model", model)])


def auc(labels: pd.Series, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """ROC AUC as trainflow reports it: plain for two classes, macro one-vs-one for more."""
    from sklearn.metrics import roc_auc_score

    if len(classes) == 2:
        return float(roc_auc_score(labels == classes[1], probabilities[:, 1]))
    return float(roc_auc_score(labels, probabilities, multi_class="ovo", labels=list(classes)))


def run(table: Path, estimator: str, out_dir: Path) -> dict[str, float]:
    import mlflow.sklearn
    from sklearn.model_selection import train_test_split

    seconds: dict[str, float] = {}
    began = time.perf_counter()
    frame = with_date_numbers(pd.read_csv(table)).dropna(subset=[TARGET])
    frame[TEXT] = frame[TEXT].fillna("")
    trainval, test = train_test_split(frame, test_size=0.2, random_state=42, stratify=frame[TARGET])
    features = [c for c in frame.columns if c not in (TARGET, "row_id")]
    train, valid = train_test_split(trainval, test_size=0.2, random_state=42, stratify=trainval[TARGET])
    seconds["load+split"] = time.perf_counter() - began
    began = time.perf_counter()
    pipeline = build(estimator, features).fit(train[features], train[TARGET])
    validation_auc = auc(valid[TARGET], pipeline.predict_proba(valid[features]), pipeline.classes_)
    seconds["fit"] = time.perf_counter() - began
    began = time.perf_counter()
    # Pinned requirements, as trainflow writes them: MLflow would otherwise infer them in a subprocess
    requirements = [f"{p}=={version(p)}" for p in ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")]
    mlflow.sklearn.save_model(
        pipeline,
        str(out_dir / "model"),
        serialization_format="skops",
        skops_trusted_types=TRUSTED,
        input_example=train[features].head(5),
        pip_requirements=requirements,
    )
    seconds["export"] = time.perf_counter() - began
    began = time.perf_counter()
    loaded = mlflow.sklearn.load_model(str(out_dir / "model"))
    test_auc = auc(test[TARGET], loaded.predict_proba(test[features]), loaded.classes_)
    seconds["score"] = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    return {
        "validation_roc_auc": validation_auc,
        "test_roc_auc": test_auc,
        "peak_rss_bytes": peak,
        **{f"seconds_{k}": v for k, v in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument(
        "--estimator",
        default="hist_gradient_boosting",
        choices=("hist_gradient_boosting", "random_forest", "logistic_regression"),
    )
    parser.add_argument("--out", type=Path, default=None, help="where to export the model (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args.table, args.estimator, args.out or Path(tmp))
    for key, value in figures.items():
        print(f"{key}: {value:.4f}")


if __name__ == "__main__":
    main()
