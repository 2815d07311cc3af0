"""Production, in a fresh process: load the logged model by its URI and score raw rows.

    python demo/pytorch/score.py MODEL_URI ROWS.parquet PREDICTIONS.parquet

Needs MLflow, pandas and torch, and the tracking URI the model was logged to
(``MLFLOW_TRACKING_URI``); nothing from the demo or from trainflow. run.py starts it with
``python -P`` so that even the demo's own folder is not importable.
"""

from __future__ import annotations

import os
import sys

import mlflow.pyfunc
import pandas as pd


def main(model_uri: str, rows_path: str, predictions_path: str) -> None:
    model = mlflow.pyfunc.load_model(model_uri)
    rows = pd.read_parquet(rows_path)
    model.predict(rows).to_parquet(predictions_path)
    print(f"[score.py, process {os.getpid()}] loaded {model_uri}, scored {len(rows)} raw rows -> {predictions_path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
