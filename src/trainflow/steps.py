"""The pipeline's steps: what each reads, what it writes, which config it uses.

This table is the single description of the workflow; ``main.py`` chains it and every
component builds its command line from it. To add a step, add an entry here, a folder
``components/<step>/`` and a library function (see ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from trainflow.errors import ConfigError


@dataclass(frozen=True)
class StepInput:
    """A component parameter naming an artifact the step consumes."""

    param: str
    artifact: str
    config_key: str | None = None  # dotted key whose value is the default reference
    # Whether the runner passes the version an earlier step of the same pipeline logged;
    # False: always the parameter's own default (batch_predict scores with prod, not the newest model)
    chained: bool = True

    def default_ref(self, cfg: DictConfig) -> str:
        if self.config_key is None:
            return f"{self.artifact}:latest"
        return str(OmegaConf.select(cfg, self.config_key, throw_on_missing=True))


@dataclass(frozen=True)
class StepSpec:
    name: str
    description: str
    inputs: tuple[StepInput, ...]
    outputs: tuple[str, ...]
    config_sections: tuple[str, ...]  # sections or dotted keys whose values the step uses
    in_all: bool = True  # False: an optional step that runs only when named in main.steps


STEPS: dict[str, StepSpec] = {
    spec.name: spec
    for spec in (
        StepSpec(
            "fetch_data",
            "download or copy the raw table and log it with its source and sha256",
            inputs=(),
            outputs=("raw_data",),
            config_sections=("data",),
        ),
        StepSpec(
            "check_data",
            "check the raw table's schema and distributions; stop the pipeline on a failed check",
            inputs=(StepInput("raw_artifact", "raw_data"),),
            outputs=("data_check_report",),
            # data_check.expectations is left out of the params (column names may hold
            # characters MLflow refuses in a param key); the report and the run's
            # resolved_config.yaml record it.
            config_sections=(
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
            inputs=(StepInput("raw_artifact", "raw_data"),),
            outputs=("trainval_data.parquet", "test_data.parquet"),
            config_sections=("data", "split", "model.task"),
        ),
        StepSpec(
            "train_model",
            "fit the inference pipeline, validate it and export it",
            inputs=(StepInput("trainval_artifact", "trainval_data.parquet"),),
            outputs=("model_export",),
            config_sections=("data", "split", "model"),
        ),
        StepSpec(
            "test_model",
            "score the exported inference artifact on the test set",
            inputs=(
                StepInput("model_artifact", "model_export", config_key="test.model"),
                StepInput("test_artifact", "test_data.parquet"),
            ),
            outputs=(),
            config_sections=("data", "test"),
        ),
        StepSpec(
            "promote_model",
            "mark a tested model for production",
            inputs=(
                StepInput("model_artifact", "model_export", config_key="promote.model"),
                StepInput("test_artifact", "test_data.parquet"),
            ),
            outputs=(),
            config_sections=("data", "promote"),
        ),
        StepSpec(
            "batch_predict",
            "score a table with the production model and log the predictions",
            inputs=(
                StepInput("model_artifact", "model_export", config_key="batch_predict.model", chained=False),
                StepInput("input_table", "test_data.parquet", config_key="batch_predict.input", chained=False),
            ),
            outputs=("predictions.parquet",),
            config_sections=("batch_predict",),
            in_all=False,
        ),
    )
}


def select_steps(steps: str) -> list[str]:
    """``"all"`` or a comma-separated list of step names, in pipeline order."""
    requested = [s.strip() for s in steps.split(",") if s.strip()]
    if not requested:
        raise ConfigError(f"main.steps is empty: use 'all' or some of: {', '.join(STEPS)}")
    if requested == ["all"]:
        return [name for name, spec in STEPS.items() if spec.in_all]
    unknown = [s for s in requested if s not in STEPS]
    if unknown:
        raise ConfigError(
            f"unknown step {', '.join(repr(s) for s in unknown)} in main.steps: valid steps are "
            f"{', '.join(STEPS)} (or 'all')"
        )
    return [s for s in STEPS if s in requested]

