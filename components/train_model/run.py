"""train_model: fit the inference pipeline on trainval data and export it as ``model_export``."""

from trainflow.model import export, train_from_config
from trainflow.run_context import StepRun, step_main


def train_model(run: StepRun) -> None:
    trainval = run.read_table("trainval_artifact")
    result = train_from_config(trainval, run.cfg)
    run.say(f"trained on {result.n_train} rows, validated on {result.n_validation}")
    run.log_metrics(result.validation_metrics, prefix="val_")
    export_dir = export(result.pipeline, result.features, run.workdir / "model_export")
    run.log_artifact(
        export_dir,
        "model_export",
        type="model_export",
        description=f"Inference pipeline (preprocessing + random forest) trained on {run.used['trainval_artifact'].ref}",
        metadata=result.summary(),
    )


if __name__ == "__main__":
    step_main("train_model", train_model, __file__)
