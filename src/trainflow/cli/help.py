"""``python main.py --help``: the pipeline's own help, without Hydra's search.

Hydra's ``--help`` lists every config group under the primary config folder, which for
trainflow is the project root (``config.yaml`` stays at the top level): it walked
``.venv/`` and the store for two minutes and listed the groups of installed packages.
This help is built from what defines the pipeline instead: the step table, the
top-level folders that hold config groups, and the defaults of the keys users set most.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from trainflow.config.schema import load_config
from trainflow.pipeline.steps import STEPS

# The keys a user sets most, in the order a first run needs them; their defaults are read
# from config.yaml itself.
MAIN_KEYS = (
    "main.steps",
    "data.uri",
    "data.target",
    "project",
    "model.task",
    "model.estimator",
    "split.test_size",
    "promote.metric",
    "artifacts.backend",
    "main.env_manager",
)
HELP_FLAGS = ("--help", "-h")


def asks_for_help(arguments: list[str]) -> bool:
    return any(argument in HELP_FLAGS for argument in arguments)


def config_groups(project_dir: Path) -> dict[str, list[str]]:
    """Hydra config groups beside ``config.yaml``: top-level folders holding ``*.yaml``
    files (hidden folders, such as a store or a virtual environment, hold none)."""
    groups = {}
    for folder in sorted(project_dir.iterdir()):
        if folder.is_dir() and not folder.name.startswith((".", "_")):
            options = sorted(path.stem for path in folder.glob("*.yaml"))
            if options:
                groups[folder.name] = options
    return groups


def main_key_defaults(project_dir: Path) -> dict[str, str]:
    """``MAIN_KEYS`` with their values in the composed default config (the demo data set's
    included): Hydra's compose reads only the files it needs, unlike its help."""
    try:
        cfg = load_config(project_dir, [])
    except Exception as error:  # noqa: BLE001 - a broken config must not take the help with it
        return {key: f"(config.yaml does not compose: {error.__class__.__name__})" for key in MAIN_KEYS}
    return {key: str(OmegaConf.select(cfg, key, default="(not set)")) for key in MAIN_KEYS}


def pipeline_help(project_dir: Path) -> str:
    """The text ``python main.py --help`` prints."""
    width = max(len(name) for name in STEPS)
    steps = "\n".join(
        f"  {spec.name:<{width}}  {spec.description}"
        + ("" if spec.in_all else " (optional: only when listed)")
        + (f"\n  {'':<{width}}    reads {', '.join(i.artifact for i in spec.inputs)}" if spec.inputs else "")
        + (f"\n  {'':<{width}}    logs {', '.join(spec.outputs)}" if spec.outputs else "")
        for spec in STEPS.values()
    )
    key_width = max(len(key) for key in MAIN_KEYS)
    keys = "\n".join(f"  {key:<{key_width}}  {value}" for key, value in main_key_defaults(project_dir).items())
    groups = "\n".join(f"  {group}: {', '.join(options)}" for group, options in config_groups(project_dir).items())
    return f"""trainflow: a reproducible training pipeline (MLflow Projects + Hydra)

Usage:
  mlflow run . [-P steps=STEP,STEP] [-P hydra_options="KEY=VALUE ..."]
  python main.py [KEY=VALUE ...]
  python main.py -m KEY=V1,V2 ...              a sweep: one pipeline per combination

Steps, in order (main.steps=all runs every step not marked optional):
{steps}

Main keys, as a default run sets them (the demo data set's included; config.yaml lists every key):
{keys}

Config groups (GROUP=OPTION):
{groups or "  (none)"}

Examples:
  mlflow run . -P hydra_options="data.uri=/data/churn.csv data.target=churned"
  python main.py main.steps=train_model,test_model model.estimator=random_forest
  python main.py -m model.hist_gradient_boosting.learning_rate=0.05,0.1

More: python main.py --cfg job (the composed config), --hydra-help (Hydra's own flags);
the README and the docs site.
"""
