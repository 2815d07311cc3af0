"""The production side of the PyTorch demo: an MLflow pyfunc model that takes raw rows
and answers class probabilities.

MLflow copies this file into the logged model and runs it when the model is loaded
("models from code"), so it imports nothing from the demo: numpy, pandas, torch and
mlflow only. Every fitted piece of preprocessing (normalisation statistics, category
vocabularies) lives inside the exported torch program. The one thing done here is
turning each category string into a fixed 64-bit number, because a ``torch.export``
program takes tensors, not strings. That hash has no fitted state: training and
serving compute it the same way, and the program decides what a code means.

Like pickle, ``torch.export.load`` can run code from a crafted archive: load only
programs your own training wrote (here run.py, through MLflow's artifact store).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel, PythonModelContext

# A missing category is sent as 0. The training side checks that no vocabulary entry
# hashes to 0, so a missing value always lands in the unknown bucket.
MISSING_CATEGORY = 0


def category_code(value: Any) -> int:
    """A category string as a stable signed 64-bit number (the same in every process,
    unlike Python's ``hash``); missing values as ``MISSING_CATEGORY``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING_CATEGORY
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def encode_raw_rows(
    rows: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw rows -> the program's two inputs: numbers as float32 (missing stays NaN; the
    program fills it) and one category code per categorical column."""
    numbers = np.array(rows[numeric].to_numpy(dtype=np.float32, na_value=np.nan))  # a writable copy for torch
    codes = np.array([[category_code(value) for value in rows[column]] for column in categorical], dtype=np.int64)
    return torch.from_numpy(numbers), torch.from_numpy(codes.T.reshape(len(rows), len(categorical)).copy())


class TabularClassifier(PythonModel):
    """pyfunc wrapper: DataFrame of raw features in, DataFrame of probabilities (one
    column per class) out. Which columns and classes comes from the model's config."""

    def load_context(self, context: PythonModelContext) -> None:
        self.program = torch.export.load(context.artifacts["program"]).module()
        config = context.model_config
        self.numeric, self.categorical, self.classes = config["numeric"], config["categorical"], config["classes"]

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        numbers, codes = encode_raw_rows(model_input, self.numeric, self.categorical)
        with torch.no_grad():
            probabilities = self.program(numbers, codes)
        return pd.DataFrame(probabilities.numpy(), columns=self.classes, index=model_input.index)


set_model(TabularClassifier())
