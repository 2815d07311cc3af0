"""trainflow's Hydra configs (``pkg://trainflow.conf``) on every Hydra search path of this
environment, so that ``hydra/launcher=ray`` is an option wherever Hydra lists or composes
choices, before ``config.yaml``'s own ``hydra.searchpath`` applies (``main.py`` checks a
group choice up front, without composing the config)."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class TrainflowSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="trainflow", path="pkg://trainflow.conf")
