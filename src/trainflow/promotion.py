"""The promotion gate: whether a tested model version may become the production model.

Pure: it reads versions' metadata and returns a decision; the step applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainflow.store import ArtifactVersion


@dataclass(frozen=True)
class Criterion:
    name: str
    value: str
    bound: str
    passed: bool


@dataclass(frozen=True)
class Decision:
    model: str
    criteria: tuple[Criterion, ...]

    @property
    def promote(self) -> bool:
        return all(c.passed for c in self.criteria)

    def table(self) -> str:
        rows = [("criterion", "value", "bound", "verdict")]
        rows += [(c.name, c.value, c.bound, "pass" if c.passed else "FAIL") for c in self.criteria]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)

    def failures(self) -> str:
        return "; ".join(f"{c.name} is {c.value}, needs {c.bound}" for c in self.criteria if not c.passed)


def decide(model: ArtifactVersion, current_test_set: ArtifactVersion) -> Decision:
    """Promote only a model that ``test_model`` scored on the current test set with finite metrics."""
    test = model.metadata.get("test") or {}
    tested_on = test.get("test_data", "never tested")
    metrics = test.get("metrics", {})
    finite = bool(metrics) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values())
    return Decision(
        model=model.ref,
        criteria=(
            Criterion("tested on current test set", tested_on, current_test_set.ref, tested_on == current_test_set.ref),
            Criterion(
                "test metrics recorded and finite",
                ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())) or "none",
                "all finite",
                finite,
            ),
        ),
    )
