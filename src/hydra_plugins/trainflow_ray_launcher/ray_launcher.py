"""``hydra/launcher=ray``: a sweep's trials as tasks on a Ray cluster.

Hydra takes launchers from the ``hydra_plugins`` namespace only, and imports every module
there whenever it starts, so this class is all that lives here: the work is trainflow's
(:func:`trainflow.pipeline.sweeps.launch_on_ray`), imported, with Ray, when a sweep
launches. Its settings are in ``trainflow/conf/hydra/launcher/ray.yaml``.

trainflow ships its own launcher rather than Hydra's ``hydra-ray-launcher``: every release
of that plugin requires ``cloudpickle<3``, while the project's pins (joblib 1.6, which
scikit-learn and the joblib launcher use) require cloudpickle 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class RayLauncher(Launcher):
    """Runs each job of a sweep as a Ray task on the cluster at ``address``."""

    def __init__(self, address: str = "auto", env: Sequence[str] = (), remote: Any = None, init: Any = None) -> None:
        self.address = str(address)  # host:port of the head's GCS, or auto (RAY_ADDRESS, else this machine's cluster)
        self.env = [str(pattern) for pattern in env]  # the driver's variables every trial gets (shell patterns)
        self.remote: dict[str, Any] = _plain(remote)  # ray.remote options of each trial: num_cpus, resources, ...
        self.init: dict[str, Any] = _plain(init)  # more ray.init arguments
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from trainflow.pipeline.sweeps import launch_on_ray

        return launch_on_ray(self, job_overrides, initial_job_idx)


def _plain(node: Any) -> dict[str, Any]:
    """A config node as a plain dict (Ray's calls take no OmegaConf containers)."""
    if node is None:
        return {}
    plain: Any = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return {str(key): value for key, value in dict(plain).items()}
