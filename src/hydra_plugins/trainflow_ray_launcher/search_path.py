"""trainflow's Hydra configs (``pkg://trainflow.conf``: its logging, ``hydra/launcher=ray``)
on every Hydra search path of this environment: ``main.py``'s run and its up-front check of
a group choice (made without composing ``config.yaml``), a step's composition and Hydra's
own listings all find them, with no ``hydra.searchpath`` in ``config.yaml``."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class TrainflowSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="trainflow", path="pkg://trainflow.conf")
