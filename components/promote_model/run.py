"""promote_model: move the production alias, in the store and the MLflow Model Registry,
to a tested model that passes the gate (trainflow.promotion.gate); record every decision.
The logic is trainflow.promotion.service.promote.
"""

from trainflow.pipeline.step_run import StepRun, step_main
from trainflow.promotion.service import promote


def promote_model(run: StepRun) -> None:
    promote(run)


if __name__ == "__main__":
    step_main("promote_model", promote_model, __file__)
