"""trainflow's pipeline: a Hydra app that runs the components in ``components/`` in order.

    mlflow run . -P steps=split_data,train_model -P hydra_options="split.test_size=0.25"
    python main.py main.steps=test_model

The step table lives in ``src/trainflow/steps.py``; each step's logic in the library.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from trainflow.config import register_schema
from trainflow.runner import Pipeline, main_argv

register_schema()
PROJECT_DIR = Path(__file__).resolve().parent


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with Pipeline.open(cfg, project_dir=PROJECT_DIR) as pipeline:
        for step in pipeline.steps:
            pipeline.run(step)


if __name__ == "__main__":
    main_argv(PROJECT_DIR)
    main()
