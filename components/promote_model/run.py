"""promote_model: move the production alias to a tested model that passes the gate."""

from trainflow.errors import TrainflowError
from trainflow.promotion import decide
from trainflow.run_context import StepRun, step_main


def promote_model(run: StepRun) -> None:
    model = run.resolve("model_artifact")
    decision = decide(model, run.resolve("test_artifact"))
    alias = run.cfg.promote.alias
    run.say(f"promotion gate for {model.ref}:\n{decision.table()}")
    if not decision.promote:
        raise TrainflowError(
            f"{model.ref} not promoted, {alias!r} unchanged: {decision.failures()}; "
            "run test_model on this model first (-P steps=test_model,promote_model)"
        )
    promoted = run.store.set_alias(model.ref, alias, run_id=run.run_id)
    run.log_metrics(model.metadata["test"]["metrics"], prefix="test_")
    run.say(f"promoted {promoted.ref} to {alias!r}")


if __name__ == "__main__":
    step_main("promote_model", promote_model, __file__)
