"""test_model: score the exported inference artifact on the held-out test set, beside the
trivial baseline the model was trained with: by how much, and how surely, it beats it is
what the promotion gate's first comparison reads."""

from trainflow.ml.evaluate import baseline_gap, baseline_outputs, headline, load_for_scoring, task_metric, task_metrics
from trainflow.ml.plots import evaluation_figures
from trainflow.pipeline.step_run import StepRun, step_main


def test_model(run: StepRun) -> None:
    cfg = run.cfg
    exported = load_for_scoring(run.use("model_artifact"), run.read_table("test_artifact"), cfg.data.target)
    labels, classes, task = exported.labels, exported.classes, exported.task
    outputs = exported.outputs()
    metrics = task_metrics(labels, outputs, classes, task)
    run.log_metrics(metrics, prefix="test_", model_id=run.input_model("model_artifact"), dataset="test_artifact")
    model, test_set = run.used["model_artifact"], run.used["test_artifact"]
    record = {"test_data": test_set.ref, "metrics": metrics, "run_id": run.run_id}
    baseline = model.metadata.get("baseline")
    if baseline:  # models trained before baselines were recorded have none
        answers = baseline_outputs(baseline, len(labels), classes, task)
        record["baseline_metrics"] = task_metrics(labels, answers, classes, task)
        run.log_metrics(record["baseline_metrics"], prefix="baseline_test_", show=False)
        said = f"baseline ({baseline['estimator']}): {headline(record['baseline_metrics'])}"
        metric = task_metric(cfg.promote.metric, task)
        if metric in metrics:
            gap = baseline_gap(metric, labels, outputs, answers, classes, task, seed=cfg.split.random_seed)
            record["baseline_gap"] = gap
            run.log_metrics(
                {f"baseline_gap_{metric}": gap["gap"], f"baseline_gap_{metric}_lower": gap["lower"]}, show=False
            )
            said += f"; {metric} beats it by {gap['gap']:+.4f} (95% lower bound {gap['lower']:+.4f})"
        run.say(said)
    run.log_table(exported.prediction_sample(outputs), "test_predictions.json")  # MLflow table, W&B table
    run.log_figures(evaluation_figures(exported.model, exported.features, labels, task))
    run.store.update_metadata(model.ref, {"test": record})
    run.say(f"recorded test metrics on {model.ref} (test set {test_set.ref})")


if __name__ == "__main__":
    step_main("test_model", test_model, __file__)
