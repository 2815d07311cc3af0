"""An inference pipeline in PyTorch for tabular data, on the penguins data.

    python demo/pytorch/run.py [--output-dir DIR] [--epochs N]

A tabular network needs preprocessing: numbers normalised with statistics fitted on
the training rows, categories looked up in a vocabulary, with a bucket for values never
seen in training. Written as part of the torch module, next to the network, and
exported with ``torch.export``, the preprocessing becomes part of one self-contained
program: production passes raw features and cannot forget a step or use other
statistics.

1. Fit the preprocessing on the training rows only; build the module around it.
2. Train a small MLP for a few epochs (CPU, about a second).
3. Export with ``torch.export``; log it to MLflow as a pyfunc model (``serving.py``)
   with a signature on the raw columns and an input example.
4. Load it by its URI in a separate Python process (``score.py``) and check that its
   predictions match the in-memory module's.

Why ``torch.export`` and not TorchScript: in torch 2.13, ``torch.jit.script`` and
``torch.jit.save`` warn that they are deprecated in favour of ``torch.export``.

Tracking goes to ``MLFLOW_TRACKING_URI`` when set, else to a SQLite database in the
output directory (default ``.trainflow/demos/pytorch``, ignored by git).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from packaging.version import Version

# The encoding production uses (serving.py is what the logged model runs); training
# imports it so both sides turn strings into codes the same way.
from serving import MISSING_CATEGORY, category_code, encode_raw_rows
from torch import nn
from torch.nn import functional

DEMO_DIR = Path(__file__).resolve().parent
PROJECT_DIR = DEMO_DIR.parents[1]
SEED = 0
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
TARGET = "species"
EXPERIMENT = "trainflow-demo-pytorch"


@dataclass(frozen=True)
class FittedPreprocessing:
    """What the preprocessing learns from the training rows, and nothing else."""

    numeric_mean: list[float]
    numeric_std: list[float]
    vocabularies: list[list[str]]  # the known values of each categorical column


def fit_preprocessing(train_rows: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FittedPreprocessing:
    numbers = train_rows[numeric].astype("float64")
    # A constant column would divide by zero; leaving it unscaled is harmless.
    std = numbers.std(ddof=0).replace(0.0, 1.0)
    vocabularies = [sorted(train_rows[column].dropna().unique().tolist()) for column in categorical]
    return FittedPreprocessing(numbers.mean().tolist(), std.tolist(), vocabularies)


def lookup(codes: torch.Tensor, vocabulary: torch.Tensor) -> torch.Tensor:
    """Each code's position in ``vocabulary`` counting from 1, or 0 (the unknown bucket)
    for a code that is not in it. Tensor operations only, so it exports."""
    matches = codes.unsqueeze(1) == vocabulary.unsqueeze(0)  # (rows, vocabulary size)
    position = matches.to(torch.int64).argmax(dim=1) + 1
    return torch.where(matches.any(dim=1), position, torch.zeros_like(position))


class TabularNetwork(nn.Module):
    """Raw features in, class probabilities out: normalisation, category lookup and an MLP.

    Inputs: ``numbers`` (rows, numeric columns) float32, NaN where missing; ``codes``
    (rows, categorical columns) int64 from ``serving.category_code``.
    """

    def __init__(
        self, preprocessing: FittedPreprocessing, n_classes: int, hidden: int = 32, embedding_dim: int = 4
    ) -> None:
        super().__init__()
        # Buffers, not parameters: saved and exported with the module, never trained.
        self.register_buffer("numeric_mean", torch.tensor(preprocessing.numeric_mean, dtype=torch.float32))
        self.register_buffer("numeric_std", torch.tensor(preprocessing.numeric_std, dtype=torch.float32))
        self.n_categorical = len(preprocessing.vocabularies)
        for i, vocabulary in enumerate(preprocessing.vocabularies):
            codes = [category_code(value) for value in vocabulary]
            # A clash would send two categories (or a category and "missing") to one index.
            if len(set(codes)) != len(codes) or MISSING_CATEGORY in codes:
                raise ValueError(f"category codes clash in vocabulary {vocabulary}")
            self.register_buffer(f"vocabulary_{i}", torch.tensor(codes, dtype=torch.int64))
        # Row 0 of each embedding is the unknown bucket: values never seen in training,
        # and missing values (which training does see, so the bucket is trained too).
        self.embeddings = nn.ModuleList(nn.Embedding(len(v) + 1, embedding_dim) for v in preprocessing.vocabularies)
        width = len(preprocessing.numeric_mean) + self.n_categorical * embedding_dim
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def normalise(self, numbers: torch.Tensor) -> torch.Tensor:
        scaled = (numbers - self.numeric_mean) / self.numeric_std
        # A missing number becomes the training mean, which is 0 once normalised.
        return torch.where(torch.isnan(scaled), torch.zeros_like(scaled), scaled)

    def category_indices(self, codes: torch.Tensor) -> torch.Tensor:
        columns = [lookup(codes[:, i], getattr(self, f"vocabulary_{i}")) for i in range(self.n_categorical)]
        return torch.stack(columns, dim=1)

    def logits(self, numbers: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        indices = self.category_indices(codes)
        embedded = [embedding(indices[:, i]) for i, embedding in enumerate(self.embeddings)]
        return self.mlp(torch.cat([self.normalise(numbers), *embedded], dim=1))

    def forward(self, numbers: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(numbers, codes), dim=1)


def section(title: str) -> None:
    print(f"\n== {title}")


def split(penguins: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified 80/20 split, so each species is in both parts."""
    test = penguins.groupby(TARGET, group_keys=False).sample(frac=0.2, random_state=SEED)
    return penguins.drop(test.index), test


def train(model: TabularNetwork, rows: pd.DataFrame, labels: torch.Tensor, epochs: int) -> None:
    numbers, codes = encode_raw_rows(rows, NUMERIC, CATEGORICAL)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for batch in torch.randperm(len(rows)).split(32):
            loss = functional.cross_entropy(model.logits(numbers[batch], codes[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        if epoch == 1 or epoch % 5 == 0 or epoch == epochs:
            print(f"epoch {epoch:>2}: training loss {total / len(rows):.4f}")
    model.eval()


def predict(model: TabularNetwork, rows: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    numbers, codes = encode_raw_rows(rows, NUMERIC, CATEGORICAL)
    with torch.no_grad():
        return pd.DataFrame(model(numbers, codes).numpy(), columns=classes, index=rows.index)


def export(model: TabularNetwork, example_rows: pd.DataFrame, path: Path) -> None:
    """torch.export traces forward() into a graph with its buffers and weights; any
    number of rows is allowed (the batch dimension is dynamic)."""
    numbers, codes = encode_raw_rows(example_rows, NUMERIC, CATEGORICAL)
    rows = torch.export.Dim("rows")
    program = torch.export.export(model, (numbers, codes), dynamic_shapes={"numbers": {0: rows}, "codes": {0: rows}})
    torch.export.save(program, path)


def log_to_mlflow(
    program_path: Path,
    rows: pd.DataFrame,
    probabilities: pd.DataFrame,
    classes: list[str],
    params: dict[str, object],
    metrics: dict[str, float],
    output_dir: Path,
) -> str:
    """Log the exported program as a pyfunc model; returns its URI."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # Run artifacts next to the database, not in ./mlruns of the current directory.
        mlflow.create_experiment(EXPERIMENT, artifact_location=(output_dir / "mlartifacts").as_uri())
    mlflow.set_experiment(EXPERIMENT)
    signature = infer_signature(rows, probabilities)
    # Every raw column is required (values inside may be missing): the program needs each.
    signature.inputs = Schema([ColSpec(type=c.type, name=c.name, required=True) for c in signature.inputs.inputs])
    with mlflow.start_run():
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(DEMO_DIR / "serving.py"),
            artifacts={"program": str(program_path)},
            model_config={"numeric": NUMERIC, "categorical": CATEGORICAL, "classes": classes},
            signature=signature,
            input_example=rows.head(3),
            pip_requirements=[
                f"torch=={Version(torch.__version__).public}",  # without the local "+cpu" label
                *(f"{package}=={installed_version(package)}" for package in ("mlflow", "pandas", "numpy")),
            ],
        )
    return info.model_uri


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=PROJECT_DIR / ".trainflow" / "demos" / "pytorch")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    output_dir = args.output_dir.resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    # Set in the environment, so the scoring process started below finds the model too.
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{output_dir / 'mlflow.db'}")
    torch.manual_seed(SEED)
    # Tensors this small train fastest on one thread; more only add synchronisation.
    torch.set_num_threads(1)

    section("1. Preprocessing fitted on the training rows, inside the module")
    penguins = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv")
    train_rows, test_rows = split(penguins)
    preprocessing = fit_preprocessing(train_rows, NUMERIC, CATEGORICAL)
    print(f"{len(train_rows)} training rows, {len(test_rows)} test rows (the statistics never see the test rows)")
    for column, mean, std in zip(NUMERIC, preprocessing.numeric_mean, preprocessing.numeric_std):
        print(f"  {column:<18} mean {mean:8.2f}  std {std:7.2f}")
    for column, vocabulary in zip(CATEGORICAL, preprocessing.vocabularies):
        print(f"  {column:<18} vocabulary {vocabulary} + index 0 for unknown or missing")
    classes = sorted(train_rows[TARGET].unique())
    model = TabularNetwork(preprocessing, n_classes=len(classes))

    section(f"2. Train the MLP ({args.epochs} epochs, CPU)")
    labels = torch.tensor(train_rows[TARGET].map(classes.index).to_numpy())
    train(model, train_rows, labels, args.epochs)
    test_probabilities = predict(model, test_rows[NUMERIC + CATEGORICAL], classes)
    accuracy = float((test_probabilities.idxmax(axis=1) == test_rows[TARGET]).mean())
    print(f"test accuracy on raw rows: {accuracy:.3f}")

    section("3. Export with torch.export, log to MLflow as a pyfunc model")
    # What production will send: raw test rows, plus rows the training data never had.
    unusual = pd.DataFrame(
        [
            {
                "bill_length_mm": 39.1,
                "bill_depth_mm": 18.7,
                "flipper_length_mm": 181.0,
                "body_mass_g": 3750.0,
                "island": "Atlantis",
                "sex": "male",
            },  # an island never seen in training
            {
                "bill_length_mm": 46.5,
                "bill_depth_mm": 17.9,
                "flipper_length_mm": 192.0,
                "body_mass_g": np.nan,
                "island": "Dream",
                "sex": None,
            },  # missing body mass and sex
        ]
    )
    rows = pd.concat([test_rows[NUMERIC + CATEGORICAL], unusual], ignore_index=True)
    in_memory = predict(model, rows, classes)
    program_path = output_dir / "tabular_network.pt2"
    export(model, rows, program_path)
    size = program_path.stat().st_size
    print(f"exported program: {program_path} ({size:,} bytes: graph, weights, statistics, vocabularies)")
    model_uri = log_to_mlflow(
        program_path,
        rows,
        in_memory,
        classes,
        params={"epochs": args.epochs, "hidden": 32, "numeric": NUMERIC, "categorical": CATEGORICAL},
        metrics={"test_accuracy": accuracy},
        output_dir=output_dir,
    )
    print(f"logged: {model_uri} (tracking: {os.environ['MLFLOW_TRACKING_URI']})")

    section("4. Reload in a separate process and compare")
    rows_path, reloaded_path = output_dir / "rows.parquet", output_dir / "predictions_reloaded.parquet"
    rows.to_parquet(rows_path)
    in_memory.to_parquet(output_dir / "predictions_in_memory.parquet")
    (output_dir / "model_uri.txt").write_text(model_uri + "\n")
    print(f"[run.py, process {os.getpid()}] starting score.py")
    # -P: the demo's folder is not on the scorer's import path; it has the URI and MLflow only.
    subprocess.run(
        [sys.executable, "-P", str(DEMO_DIR / "score.py"), model_uri, str(rows_path), str(reloaded_path)], check=True
    )
    reloaded = pd.read_parquet(reloaded_path)
    difference = float(np.abs(reloaded.to_numpy() - in_memory.to_numpy()).max())
    same_classes = bool((reloaded.idxmax(axis=1) == in_memory.idxmax(axis=1)).all())
    print(f"{len(rows)} rows: largest probability difference {difference:.2e}; same predicted classes: {same_classes}")
    print("the unusual rows, as the reloaded model answers them:")
    island_index = model.category_indices(encode_raw_rows(unusual, NUMERIC, CATEGORICAL)[1])[:, 0]
    shown = unusual.assign(island_index=island_index.numpy())
    print(pd.concat([shown, reloaded.tail(len(unusual)).reset_index(drop=True).round(3)], axis=1).to_string())
    print("island_index 0 is the unknown bucket; the missing mass became the training mean")
    if not (difference <= 1e-6 and same_classes):
        sys.exit("the reloaded model does not predict what the trained module predicts")


if __name__ == "__main__":
    main()
