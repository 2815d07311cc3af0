"""Hydra config groups trainflow ships, on Hydra's search path through the plugin in
``hydra_plugins.trainflow_ray_launcher.search_path``: its logging and ``hydra/launcher=ray``."""
