"""train_model: fit the inference pipeline on trainval data and export it as ``model_export``."""

from trainflow.ml.features import format_feature_table
from trainflow.ml.plots import evaluation_figures
from trainflow.ml.train import export, train_from_config
from trainflow.pipeline.step_run import StepRun, step_main
from trainflow.store.records import MLFLOW_MODEL_ID
from trainflow.store.refs import CANDIDATE_ALIAS


def train_model(run: StepRun) -> None:
    cfg = run.cfg
    trainval = run.resolve("trainval_artifact")
    # model.task=auto: the task split_data decided from the whole table (trainval alone could differ)
    task = trainval.metadata.get("task", "auto") if cfg.model.task == "auto" else cfg.model.task
    # Not kept in a variable: train_from_config frees the frame once it is split.
    result = train_from_config(run.read_table("trainval_artifact"), cfg, task)
    used = int((result.feature_table["kind"] != "dropped").sum())
    run.say(
        f"{result.task} with {result.estimator} on {len(result.train_rows):,} rows (validation "
        f"{len(result.validation[0]):,}); features ({used} of {len(result.feature_table)} columns):\n"
        + format_feature_table(result.feature_table)
    )
    run.log_table(result.feature_table, "features.json")
    run.log_params({f"features_used.{kind}": columns for kind, columns in result.features.as_dict().items()})
    with run.logged_model(
        run.workdir / "model_export", result.task, {"estimator": result.estimator, **result.estimator_params}, trainval
    ) as model_id:
        export_dir = export(
            result,
            run.workdir / "model_export",
            serialization=cfg.model.serialization,
            trusted_types=list(cfg.model.trusted_types),
            model_id=model_id,
        )
    # Measured on the validation rows of trainval: the model's metrics on that dataset.
    run.log_metrics(result.validation_metrics, prefix="val_", model_id=model_id, dataset="trainval_artifact")
    run.log_figures(evaluation_figures(result.pipeline, *result.validation, result.task, cfg.split.random_seed))
    run.log_artifact(
        export_dir,
        "model_export",
        type="model_export",
        description=f"Inference pipeline (preprocessing + {result.estimator}) trained on {trainval.ref}",
        metadata={**result.summary(), MLFLOW_MODEL_ID: model_id},
        # The model to test and promote next; a sweep nominates its best trial instead.
        aliases=() if run.sweep else (CANDIDATE_ALIAS,),
    )


if __name__ == "__main__":
    step_main("train_model", train_model, __file__)
