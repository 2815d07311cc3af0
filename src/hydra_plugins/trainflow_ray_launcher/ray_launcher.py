"""``hydra/launcher=ray``: a sweep's trials as tasks on a Ray cluster, through Hydra's Ray
launcher (``hydra-ray-launcher``) with what a trainflow sweep adds around it.

Hydra's launcher connects (``ray.init``), sends each job to the cluster as a Ray task
(``ray.remote`` with ``hydra.launcher.ray.remote``) and runs it there with Hydra's
``run_job``. trainflow's subclass adds, in :func:`trainflow.pipeline.sweeps.ray_launch`:
the driver's ``TRAINFLOW_*``, ``MLFLOW_*`` and ``WANDB_*`` variables on every trial (never
a credential), a check that the trial's node sees the sweep's store, the trial's record
sent back to the driver, and one-line errors for a cluster that does not answer. Its
settings are in ``trainflow/conf/hydra/launcher/ray.yaml``, which Hydra checks against
Hydra's Ray launcher's schema (``ray.init``, ``ray.remote``).

Hydra imports every module under ``hydra_plugins`` whenever it starts, with or without the
``ray`` extra, so this module imports neither Ray nor Hydra's Ray launcher at import time
when they are missing: the launcher then says in one line how to install them.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

try:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as HydraRayLauncher
except ImportError:  # the ray extra is not installed: a sweep with hydra/launcher=ray says so when it starts
    HydraRayLauncher = None  # type: ignore[assignment,misc]


class RayLauncher(Launcher if HydraRayLauncher is None else HydraRayLauncher):  # type: ignore[misc]
    """Hydra's Ray launcher, with a trainflow sweep's variables, store check and records."""

    def __init__(self, ray: DictConfig) -> None:
        self.ray_cfg = ray  # Hydra's Ray launcher's settings: its ray.init and ray.remote arguments
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from trainflow.pipeline.sweeps import ray_launch

        hydra_launch = None if HydraRayLauncher is None else super().launch
        return ray_launch(self, hydra_launch, job_overrides, initial_job_idx)
