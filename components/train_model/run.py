"""train_model: fit the inference pipeline on trainval data and export it as ``model_export``."""

from trainflow.model import export, train_from_config
from trainflow.plots import evaluation_figures
from trainflow.run_context import StepRun, step_main
from trainflow.sweeps import CANDIDATE_ALIAS


def train_model(run: StepRun) -> None:
    # Not kept in a variable: train_from_config frees the frame once it is split.
    result = train_from_config(run.read_table("trainval_artifact"), run.cfg)
    run.say(
        f"{result.task} with {result.estimator} on {len(result.train_rows)} rows "
        f"(validation {len(result.validation[0])}); features: {result.features.as_dict()}"
    )
    run.log_params({f"features_used.{kind}": columns for kind, columns in result.features.as_dict().items()})
    run.log_metrics(result.validation_metrics, prefix="val_")
    run.log_figures(evaluation_figures(result.pipeline, *result.validation, result.task, run.cfg.split.random_seed))
    export_dir = export(result, run.workdir / "model_export", serialization=run.cfg.model.serialization)
    run.log_artifact(
        export_dir,
        "model_export",
        type="model_export",
        description=f"Inference pipeline (preprocessing + {result.estimator}) trained on {run.used['trainval_artifact'].ref}",
        metadata=result.summary(),
        # The model to test and promote next; a sweep nominates its best trial instead.
        aliases=() if run.sweep else (CANDIDATE_ALIAS,),
    )


if __name__ == "__main__":
    step_main("train_model", train_model, __file__)
