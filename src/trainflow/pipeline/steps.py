"""The pipeline's steps: what each reads, what it writes, which config it uses.

This table is the single description of the workflow; ``main.py`` chains it and every
component builds its command line from it. To add a step, add an entry here, a folder
``components/<step>/`` and a library function (see ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from trainflow.config.schema import flatten
from trainflow.errors import ConfigError

if TYPE_CHECKING:
    from trainflow.store.records import ArtifactVersion

# Each step's MLflow run carries trainflow.output.<artifact> = <name:vN> for every version it
# logged (or, for a cache hit, re-used): how the runner and sweeps learn a step's results.
OUTPUT_TAG = "trainflow.output."
# The project (table and target) a run worked for: MLflow's search and UI filter by it.
PROJECT_TAG = "trainflow.project"


@dataclass(frozen=True)
class StepInput:
    """A component parameter naming an artifact the step consumes."""

    param: str
    artifact: str
    # The type a version must have to be used here (None: any table), so that a reference
    # to the wrong kind of artifact (a raw table to train on, a dataset as the model) fails
    # before the step reads it, naming what it needs.
    artifact_type: str | None
    config_key: str | None = None  # dotted key whose value is the default reference
    # Whether the runner passes the version an earlier step of the same pipeline logged;
    # False: always the parameter's own default (batch_predict scores with prod, not the newest model)
    chained: bool = True
    # What the table is to the step, as MLflow shows a logged dataset's context ("training",
    # "test"); tables only (a model input has none).
    dataset_context: str | None = None

    def default_ref(self, cfg: DictConfig) -> str:
        if self.config_key is None:
            return f"{self.artifact}:latest"
        return str(OmegaConf.select(cfg, self.config_key, throw_on_missing=True))

    def check_type(self, step: str, version: ArtifactVersion) -> None:
        """Refuse a version of another type than this input needs (ConfigError: the reference is the user's)."""
        if self.artifact_type is not None and version.type != self.artifact_type:
            raise ConfigError(
                f"{step} cannot use {version.ref} as its {self.param}: that is a {version.type!r} artifact and "
                f"{step} needs a {self.artifact_type!r} one, such as {self.artifact}:latest; "
                f"point {self.config_key or self.param} at one"
            )


@dataclass(frozen=True)
class StepSpec:
    name: str
    description: str
    inputs: tuple[StepInput, ...]
    outputs: tuple[str, ...]
    config_sections: tuple[str, ...]  # sections or dotted keys whose values the step uses
    in_all: bool = True  # False: an optional step that runs only when named in main.steps

    def input(self, param: str) -> StepInput:
        """The input named by component parameter ``param``."""
        return next(i for i in self.inputs if i.param == param)


# Which earlier runs may stand in for a step, and what their key sees, is a table of its
# own: trainflow.pipeline.cache.CACHE_POLICIES.
STEPS: dict[str, StepSpec] = {
    spec.name: spec
    for spec in (
        StepSpec(
            "fetch_data",
            "download or copy the raw table and log it with its source and sha256",
            inputs=(),
            outputs=("raw_data",),
            config_sections=("project", "data"),
        ),
        StepSpec(
            "check_data",
            "check the raw table's schema and distributions; stop the pipeline on a failed check",
            inputs=(StepInput("raw_artifact", "raw_data", "raw_data", dataset_context="raw"),),
            outputs=("data_check_report",),
            # data_check.expectations is left out of the params (column names may hold
            # characters MLflow refuses in a param key); the report and the run's
            # resolved_config.yaml record it.
            config_sections=(
                "project",
                "data",
                "data_check.min_class_count",
                "data_check.max_duplicate_fraction",
                "data_check.drift",
                "data_check.fail_on",
                "data_check.reference_alias",
                "model.task",
            ),
        ),
        StepSpec(
            "split_data",
            "split the raw table into trainval and held-out test sets",
            inputs=(StepInput("raw_artifact", "raw_data", "raw_data", dataset_context="raw"),),
            outputs=("trainval_data.parquet", "test_data.parquet"),
            config_sections=("project", "data", "split", "model.task"),
        ),
        StepSpec(
            "train_model",
            "fit the inference pipeline, validate it and export it",
            inputs=(StepInput("trainval_artifact", "trainval_data.parquet", "split_data", dataset_context="training"),),
            outputs=("model_export",),
            config_sections=("project", "data", "split", "model"),
        ),
        StepSpec(
            "test_model",
            "score the exported inference artifact on the test set",
            inputs=(
                StepInput("model_artifact", "model_export", "model_export", config_key="test.model"),
                StepInput("test_artifact", "test_data.parquet", "split_data", dataset_context="test"),
            ),
            outputs=(),
            # promote.metric: the metric whose gap to the baseline test_model bootstraps
            config_sections=("project", "data", "test", "promote.metric"),
        ),
        StepSpec(
            "promote_model",
            "mark a tested model for production",
            inputs=(
                StepInput("model_artifact", "model_export", "model_export", config_key="promote.model"),
                StepInput("test_artifact", "test_data.parquet", "split_data", dataset_context="test"),
            ),
            outputs=(),
            config_sections=("project", "data", "promote"),
        ),
        StepSpec(
            "batch_predict",
            "score a table with the production model and log the predictions",
            inputs=(
                StepInput(
                    "model_artifact", "model_export", "model_export", config_key="batch_predict.model", chained=False
                ),
                StepInput(
                    "input_table",
                    "test_data.parquet",
                    None,
                    config_key="batch_predict.input",
                    chained=False,
                    dataset_context="inference",
                ),
            ),
            outputs=("predictions.parquet",),
            config_sections=("project", "batch_predict", "data.max_bytes"),
            in_all=False,
        ),
    )
}


def step_params(cfg: DictConfig, spec: StepSpec) -> dict[str, Any]:
    """The resolved config values the step uses, as flat dotted keys: what its MLflow run
    logs as params and what its cache key holds."""
    params: dict[str, Any] = {}
    for key in spec.config_sections:
        node = OmegaConf.select(cfg, key, throw_on_missing=True)
        params.update(flatten(node, f"{key}.") if isinstance(node, DictConfig) else {key: node})
    return params


def select_steps(steps: str) -> list[str]:
    """``"all"`` or a comma-separated list of step names, in pipeline order."""
    requested = [s.strip() for s in steps.split(",") if s.strip()]
    if not requested:
        raise ConfigError(f"main.steps is empty: use 'all' or some of: {', '.join(STEPS)}")
    if set(requested) == {"all"}:
        return [name for name, spec in STEPS.items() if spec.in_all]
    problems = []
    unknown = [s for s in requested if s not in STEPS and s != "all"]
    if unknown:
        problems.append(f"unknown step {', '.join(repr(s) for s in unknown)}")
    if "all" in requested:
        # Not a union: 'all' leaves the optional steps out, so 'all,batch_predict' would be
        # ambiguous, and 'all,train_model' is more likely a slip than a wish.
        problems.append("'all' cannot be combined with other steps")
    if problems:
        raise ConfigError(
            f"{' and '.join(problems)} in main.steps={steps!r}: use 'all' alone, or a comma-separated list of "
            f"the valid steps: {', '.join(STEPS)}"
        )
    return [s for s in STEPS if s in requested]
