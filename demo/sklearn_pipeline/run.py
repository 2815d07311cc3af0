"""Why an inference pipeline matters, shown with scikit-learn on the penguins data.

    python demo/sklearn_pipeline/run.py [--output-dir DIR]

1. Preprocessing fitted by hand has to be repeated by hand at prediction time. Forget
   it and the model fails on a missing value, or worse, quietly answers nonsense. A
   ``Pipeline`` carries the fitted preprocessing together with the model.
2. Real tables mix numbers, categories and free text. A ``ColumnTransformer`` sends each
   kind of column through its own preprocessing; the whole pipeline is fitted in one
   call and predicts on raw rows.
3. Saved with ``mlflow.sklearn.save_model`` (signature, input example), the pipeline
   loads back with MLflow alone and predicts exactly what it predicted after training.

Writes the MLflow model, the rows it scored and its predictions to ``--output-dir``
(default ``.trainflow/demos/sklearn_pipeline``, ignored by git).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

# The project's small inference-time package: TextColumn turns one text column (with
# missing values) into the 1-D array of strings TF-IDF expects. It is shipped inside the
# saved model (code_paths), so loading needs MLflow and the model folder, not trainflow.
import trainflow_inference
from trainflow_inference import TextColumn

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_DIR / "data"
SEED = 0

# Part 1 uses the tidy table: four measurements, predict the species.
MEASUREMENTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]

# Part 2 uses the original table, with a free-text Comments column.
RAW_NUMERIC = [
    "Culmen Length (mm)",
    "Culmen Depth (mm)",
    "Flipper Length (mm)",
    "Body Mass (g)",
    "Delta 15 N (o/oo)",
    "Delta 13 C (o/oo)",
]
RAW_CATEGORICAL = ["Island", "Sex", "Clutch Completion"]
RAW_TEXT = "Comments"
RAW_FEATURES = RAW_NUMERIC + RAW_CATEGORICAL + [RAW_TEXT]


def section(title: str) -> None:
    print(f"\n== {title}")


def why_a_pipeline() -> None:
    """Part 1: the same three steps by hand, then as a Pipeline."""
    section("1. Why a pipeline: preprocessing by hand vs. a Pipeline")
    penguins = pd.read_csv(DATA_DIR / "penguins.csv")
    x_train, x_test, y_train, y_test = train_test_split(
        penguins[MEASUREMENTS], penguins["species"], test_size=0.25, random_state=SEED, stratify=penguins["species"]
    )

    # By hand: fit an imputer and a scaler on the training rows, the model on their output.
    imputer = SimpleImputer().fit(x_train)
    scaler = StandardScaler().fit(imputer.transform(x_train))
    model = LogisticRegression().fit(scaler.transform(imputer.transform(x_train)), y_train)
    by_hand = accuracy_score(y_test, model.predict(scaler.transform(imputer.transform(x_test))))
    print(f"accuracy, preprocessing repeated by hand at prediction time: {by_hand:.3f}")

    # Production code that was handed the model but not the imputer and the scaler:
    complete = x_test.dropna()
    forgotten = accuracy_score(y_test[complete.index], model.predict(complete.to_numpy()))
    print(f"accuracy, the same model on raw rows (scaler forgotten):      {forgotten:.3f}  <- no error, just wrong")
    row_with_gap = pd.DataFrame(
        [{"bill_length_mm": 39.1, "bill_depth_mm": np.nan, "flipper_length_mm": 181.0, "body_mass_g": 3750.0}]
    )
    try:
        model.predict(row_with_gap.to_numpy())
    except ValueError as error:
        print(f"a raw row with a missing value (imputer forgotten):           ValueError: {str(error).splitlines()[0]}")

    # The fix: the fitted preprocessing travels with the model, as one estimator.
    pipeline = Pipeline(
        steps=[
            ("imputer", SimpleImputer()),
            ("scaler", StandardScaler()),
            ("model", LogisticRegression()),
        ]
    )
    pipeline.fit(x_train, y_train)
    with_pipeline = accuracy_score(y_test, pipeline.predict(x_test))
    print(f"accuracy, Pipeline on raw rows (missing values included):    {with_pipeline:.3f}")
    print(f"Pipeline on the row with a missing value: {pipeline.predict(row_with_gap)[0]}")

    # make_pipeline is the same thing with step names derived from the classes.
    shorthand = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(x_train, y_train)
    same = np.array_equal(pipeline.predict_proba(x_test), shorthand.predict_proba(x_test))
    print(f"make_pipeline steps: {list(shorthand.named_steps)}; same probabilities as Pipeline: {same}")


def build_classifier() -> Pipeline:
    """Part 2's pipeline: each kind of column gets its own preprocessing, then one model."""
    preprocess = ColumnTransformer(
        [
            # Numbers: fill gaps with the training median, then standardise.
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), RAW_NUMERIC),
            # Categories: fill gaps with the most frequent value, then one column per value;
            # a value never seen in training becomes all zeros instead of an error.
            (
                "categorical",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                RAW_CATEGORICAL,
            ),
            # Free text: missing comments become "", then TF-IDF weights of its words.
            ("text", make_pipeline(TextColumn(), TfidfVectorizer(max_features=50)), [RAW_TEXT]),
        ],
        remainder="drop",  # columns not named above (ids, dates...) are ignored
    )
    return Pipeline([("preprocess", preprocess), ("model", LogisticRegression(max_iter=1000))])


def column_transformer() -> tuple[Pipeline, pd.DataFrame]:
    """Part 2: fit on the raw table in one call; predict on raw rows. Returns the fitted
    pipeline and the raw test rows."""
    section("2. A ColumnTransformer: numeric, categorical and text columns, fitted in one call")
    raw = pd.read_csv(DATA_DIR / "penguins-raw.csv")
    species = raw["Species"].str.split().str[0]  # "Adelie Penguin (Pygoscelis adeliae)" -> "Adelie"
    x_train, x_test, y_train, y_test = train_test_split(
        raw[RAW_FEATURES], species, test_size=0.25, random_state=SEED, stratify=species
    )
    classifier = build_classifier()
    classifier.fit(x_train, y_train)

    # What each branch turned its raw columns into (output_indices_: each branch's slice of the matrix).
    fitted = classifier.named_steps["preprocess"]
    examples = {
        "numeric": RAW_NUMERIC,
        "categorical": fitted.named_transformers_["categorical"][-1].get_feature_names_out(RAW_CATEGORICAL),
        "text": fitted.named_transformers_["text"][-1].get_feature_names_out(),
    }
    for name, columns in (("numeric", RAW_NUMERIC), ("categorical", RAW_CATEGORICAL), ("text", [RAW_TEXT])):
        width = fitted.output_indices_[name].stop - fitted.output_indices_[name].start
        print(f"{name:<11} {len(columns)} raw column(s) -> {width:>2} features, e.g. {list(examples[name][:4])}")
    print(f"test accuracy on raw rows: {accuracy_score(y_test, classifier.predict(x_test)):.3f}")

    # Raw rows as production sends them: gaps, a comment, and an island never seen in training.
    complete = x_test[x_test[RAW_TEXT].isna()].dropna(subset=RAW_NUMERIC + RAW_CATEGORICAL)
    examples = pd.concat(
        [
            complete.head(1),
            x_test[x_test["Delta 15 N (o/oo)"].isna()].head(1),
            x_test[x_test[RAW_TEXT].str.contains("clutch", na=False)].head(1),
            complete.head(1).assign(Island="Atlantis", **{"Body Mass (g)": np.nan}),
        ],
        ignore_index=True,
    )
    probabilities = pd.DataFrame(classifier.predict_proba(examples), columns=classifier.classes_).round(3)
    shown = examples[["Culmen Length (mm)", "Body Mass (g)", "Delta 15 N (o/oo)", "Island", "Sex", RAW_TEXT]]
    print("predict and predict_proba on raw rows:")
    predicted = pd.Series(classifier.predict(examples), name="predict")
    print(pd.concat([shown, probabilities, predicted], axis=1).to_string())
    print(
        "row 3: an island never seen in training and no body mass; the encoder ignores the island, "
        "the imputer fills the mass"
    )
    return classifier, x_test


def export(classifier: Pipeline, rows: pd.DataFrame, model_dir: Path) -> None:
    """Part 3a: save the fitted pipeline as an MLflow model."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    from trainflow.ml.train import SKOPS_TRUSTED_TYPES, pinned_requirements

    # The signature records the raw input columns and types, and the output's shape.
    signature = infer_signature(rows, classifier.predict_proba(rows))
    # MLflow marks a column that had gaps as optional; but the ColumnTransformer needs
    # every column, so require all of them (values inside a column may still be missing).
    signature.inputs = Schema([ColSpec(type=c.type, name=c.name, required=True) for c in signature.inputs.inputs])
    mlflow.sklearn.save_model(
        classifier,
        str(model_dir),
        signature=signature,
        input_example=rows.head(3),
        # skops loads only types on a reviewed list (trainflow's, with a reason for each),
        # unlike pickle, which can run any code while loading.
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        code_paths=[str(Path(trainflow_inference.__file__).parent)],
        pyfunc_predict_fn="predict_proba",
        # Pinned to this environment; also spares MLflow inferring them (a slow subprocess).
        pip_requirements=pinned_requirements(),
    )


def load_and_predict(model_dir: Path, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Part 3b, the production side: MLflow and the model folder, no training code.

    Returns the sklearn flavour's ``predict_proba`` and the pyfunc flavour's answer
    (what ``mlflow models serve`` would send back)."""
    import mlflow.pyfunc
    import mlflow.sklearn

    pipeline = mlflow.sklearn.load_model(str(model_dir))
    served = mlflow.pyfunc.load_model(str(model_dir))  # checks rows against the signature first
    return pipeline.predict_proba(rows), pd.DataFrame(served.predict(rows))


def export_and_reload(classifier: Pipeline, rows: pd.DataFrame, output_dir: Path) -> None:
    section("3. Export with mlflow.sklearn.save_model, load back without training code")
    model_dir = output_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)  # save_model refuses an existing folder
    export(classifier, rows, model_dir)
    print(f"saved: {model_dir} ({', '.join(sorted(p.name for p in model_dir.iterdir()))})")

    in_memory = classifier.predict_proba(rows)
    reloaded, served = load_and_predict(model_dir, rows)
    print(
        f"reloaded pipeline, predict_proba on {len(rows)} raw rows: identical to the in-memory pipeline: "
        f"{np.array_equal(in_memory, reloaded)}"
    )
    print(f"pyfunc flavour (as served): identical: {np.array_equal(in_memory, served.to_numpy())}")

    # What the tests check from outside: the rows, and what the in-memory pipeline said.
    rows.to_parquet(output_dir / "rows.parquet")
    pd.DataFrame(in_memory, columns=classifier.classes_).to_parquet(output_dir / "predictions.parquet")


def same_from_config() -> None:
    section("4. In trainflow, train_model builds this shape from config.yaml")
    from sklearn.linear_model import LogisticRegression

    from trainflow.ml.features import FeatureSpec, PreprocessingOptions, build_preprocessor, plan_features

    raw = pd.read_csv(DATA_DIR / "penguins-raw.csv")
    spec = FeatureSpec(numeric=RAW_NUMERIC, categorical=RAW_CATEGORICAL, text=[RAW_TEXT])
    # The encoding follows the estimator: one-hot for a linear model, as above
    plan = plan_features(raw, spec, PreprocessingOptions(), LogisticRegression(), n_classes=3)
    preprocess = build_preprocessor(plan, PreprocessingOptions())
    print(
        f"trainflow.ml.features.build_preprocessor(plan_features(...)) -> ColumnTransformer with "
        f"{[name for name, _, _ in preprocess.transformers]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=PROJECT_DIR / ".trainflow" / "demos" / "sklearn_pipeline")
    output_dir = parser.parse_args().output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)

    why_a_pipeline()
    classifier, test_rows = column_transformer()
    export_and_reload(classifier, test_rows, output_dir)
    same_from_config()


if __name__ == "__main__":
    main()
