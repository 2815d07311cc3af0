"""A config section as a plain dict: what every layer hands to code that takes keyword
arguments or writes JSON (estimator parameters, check settings, logged configs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf


def section_dict(section: DictConfig | Mapping[str, Any], resolve: bool = True) -> dict[str, Any]:
    """``section`` as a plain ``dict`` (nested sections and lists too), interpolations
    resolved unless ``resolve`` is false. A section that is not a mapping is a config error
    Hydra's schema already refuses, so it fails loudly here."""
    if not isinstance(section, DictConfig):
        return dict(section)
    plain = OmegaConf.to_container(section, resolve=resolve, throw_on_missing=False)
    if not isinstance(plain, dict):  # pragma: no cover - a DictConfig always gives a dict
        raise TypeError(f"expected a mapping, got {type(plain).__name__}")
    return {str(key): value for key, value in plain.items()}
