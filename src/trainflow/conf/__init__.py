"""Hydra config groups trainflow ships (``hydra.searchpath`` in ``config.yaml``): its logging."""
