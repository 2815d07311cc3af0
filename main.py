"""trainflow's pipeline: a Hydra app that runs the components in ``components/`` in order.

    mlflow run . -P steps=split_data,train_model -P hydra_options="split.test_size=0.25"
    python main.py main.steps=test_model
    python main.py -m main.steps=train_model model.random_forest.max_depth=5,10   # a sweep

The step table lives in ``src/trainflow/pipeline/steps.py``; each step's logic in the library.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from trainflow.cli.help import asks_for_help, pipeline_help
from trainflow.config.schema import register_schema
from trainflow.errors import exit_on_interrupt, interrupt_on_signals
from trainflow.pipeline.runner import Pipeline, exit_now, main_argv
from trainflow.pipeline.sweeps import sweep_trial

register_schema()
PROJECT_DIR = Path(__file__).resolve().parent
VALIDATED: DictConfig | None = None  # the config main_argv composed and validated, if it did


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    # In a sweep (-m) each job is a trial: its outcome is recorded, and a failed trial
    # does not stop the others. Outside a sweep this adds nothing.
    with sweep_trial(), Pipeline.open(cfg, project_dir=PROJECT_DIR, validated=VALIDATED) as pipeline:
        for step in pipeline.steps:
            pipeline.run(step)


if __name__ == "__main__":
    if asks_for_help(sys.argv[1:]):  # Hydra's own --help searches the whole project folder
        print(pipeline_help(PROJECT_DIR), end="")
        raise SystemExit(0)
    interrupt_on_signals()
    with exit_on_interrupt("trainflow"):
        VALIDATED = main_argv(PROJECT_DIR)
        main()  # a failure exits inside, with the error line
    exit_now()
