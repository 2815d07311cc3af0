"""test_model: score the exported inference artifact on the held-out test set."""

from trainflow.evaluate import load_for_scoring
from trainflow.plots import evaluation_figures
from trainflow.run_context import StepRun, step_main


def test_model(run: StepRun) -> None:
    exported = load_for_scoring(run.use("model_artifact"), run.read_table("test_artifact"), run.cfg.data.target)
    metrics = exported.score()
    run.log_metrics(metrics, prefix="test_")
    run.log_figures(evaluation_figures(exported.model, exported.features, exported.labels, exported.task))
    model, test_set = run.used["model_artifact"], run.used["test_artifact"]
    run.store.update_metadata(
        model.ref, {"test": {"test_data": test_set.ref, "metrics": metrics, "run_id": run.run_id}}
    )
    run.say(f"recorded test metrics on {model.ref} (test set {test_set.ref})")


if __name__ == "__main__":
    step_main("test_model", test_model, __file__)
