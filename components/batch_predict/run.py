"""batch_predict: score a table (an artifact, a file or a URL) with the production model
and log the rows with their predictions as ``predictions.parquet``. Optional: not in ``all``.
"""

from pathlib import Path

from trainflow.ml.data import fetch, read_table
from trainflow.ml.inference import is_location, predict_table, prediction_column
from trainflow.pipeline.step_run import StepRun, step_config_dir, step_main

PROJECT_DIR = step_config_dir(__file__)
# The key a user sets the table with, so that input errors name it rather than data.uri.
INPUT_SETTING = "batch_predict.input"


def batch_predict(run: StepRun) -> None:
    model_dir = run.use("model_artifact")
    model = run.used["model_artifact"]
    run.input_model("model_artifact")  # the MLflow model this run scores with, as its input
    source = run.input_refs["input_table"]
    if is_location(source):
        # A relative path is relative to the project's config.yaml, like data.uri.
        uri = source if "://" in source else str((PROJECT_DIR / Path(source).expanduser()).resolve())
        # data.max_bytes bounds every table trainflow fetches (the size error names it)
        fetched = fetch(uri, run.workdir / "input", max_bytes=run.cfg.data.max_bytes, setting=INPUT_SETTING)
        frame = read_table(
            fetched.path, setting=INPUT_SETTING, allow_empty=True, limits=run.table_limits
        )  # no rows: no predictions
        origin = {"source": fetched.source, "sha256": fetched.sha256}
        described = fetched.source
    else:
        frame = run.read_table("input_table")
        described = run.used["input_table"].ref
        origin = {"artifact": described}
    column = prediction_column(frame.columns)  # "prediction", or "prediction_1" if the input has one
    predictions = predict_table(model_dir, frame)
    run.say(f"scored {len(predictions)} rows of {described} with {model.ref}")
    path = run.workdir / "predictions.parquet"
    predictions.to_parquet(path, index=False)
    run.log_metrics({"rows_scored": len(predictions)})
    counts = None
    if predictions[column].nunique() <= 50:  # class labels, not regression values
        counts = predictions[column].astype(str).value_counts().sort_index()
    run.log_artifact(
        path,
        "predictions.parquet",
        type="predictions",
        description=f"{described} scored by {model.ref}",
        metadata={
            "model": model.ref,
            "input": origin,
            "rows": len(predictions),
            "columns": [str(c) for c in predictions.columns],
            **({"prediction_counts": {str(k): int(v) for k, v in counts.items()}} if counts is not None else {}),
        },
    )


if __name__ == "__main__":
    step_main("batch_predict", batch_predict, __file__)
