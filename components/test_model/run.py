"""test_model: score the exported inference artifact on the held-out test set, beside the
trivial baseline the model was trained with (the promotion gate compares the two)."""

from trainflow.evaluate import baseline_scores, headline, load_for_scoring
from trainflow.plots import evaluation_figures
from trainflow.run_context import StepRun, step_main


def test_model(run: StepRun) -> None:
    exported = load_for_scoring(run.use("model_artifact"), run.read_table("test_artifact"), run.cfg.data.target)
    metrics = exported.score()
    run.log_metrics(metrics, prefix="test_")
    model, test_set = run.used["model_artifact"], run.used["test_artifact"]
    record = {"test_data": test_set.ref, "metrics": metrics, "run_id": run.run_id}
    baseline = model.metadata.get("baseline")
    if baseline:  # models trained before baselines were recorded have none
        scores = baseline_scores(baseline, exported.labels, getattr(exported.model, "classes_", []), exported.task)
        run.log_metrics(scores, prefix="baseline_test_", show=False)
        run.say(f"baseline ({baseline['estimator']}): {headline(scores)}")
        record["baseline_metrics"] = scores
    run.log_figures(evaluation_figures(exported.model, exported.features, exported.labels, exported.task))
    run.store.update_metadata(model.ref, {"test": record})
    run.say(f"recorded test metrics on {model.ref} (test set {test_set.ref})")


if __name__ == "__main__":
    step_main("test_model", test_model, __file__)
