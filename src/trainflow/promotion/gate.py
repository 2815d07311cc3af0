"""The promotion gate: whether a tested model version may become the production model.

Pure: it reads versions' metadata and a policy and returns a :class:`Decision`; the
``promote_model`` step applies it (moves the alias, registers the model, records the
decision). Nothing here touches MLflow, the store or the disk.

A candidate is promoted only when

1. ``test_model`` scored it on the current test set, with finite metrics;
2. it beats the trivial baseline on ``promote.metric`` by ``promote.baseline_margin``:
   scikit-learn's ``DummyClassifier`` (class priors) or ``DummyRegressor`` (the mean)
   fitted on the model's own training rows and scored on the same test set, which
   ``test_model`` records beside the model's metrics. This holds on any table, with or
   without a champion or bounds: a model no better than guessing is never promoted;
3. every absolute threshold in ``promote.thresholds`` holds, each in its own metric's
   direction: a minimum for a score, a maximum for an error (``log_loss``, ``mae``,
   ``rmse``), whatever ``promote.metric`` is;
4. it beats the champion (the version holding the alias) on ``promote.metric``, on the
   same test set, strictly and by at least ``promote.min_improvement``. With no
   champion the baseline and thresholds decide; ``promote.force`` overrides this
   comparison only, and the decision says so. Input columns that differ from the
   champion's are noted in the table.

A failure of (1), (2) or (3) is a refusal; a failure of (4) alone keeps the champion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from trainflow.errors import ConfigError
from trainflow.store.records import ArtifactVersion
from trainflow.store.refs import CANDIDATE_ALIAS, LATEST

# trainflow.ml.evaluate (pandas) is imported inside the functions that use it: about 0.3 s that
# `python main.py --help` and the trainflow CLI, which import this module, do not pay (docs/architecture.md#start-up).

PROMOTED = "promoted"
CHAMPION_KEPT = "champion_kept"
REFUSED = "refused"
ROLLED_BACK = "rolled_back"

ELIGIBILITY = "eligibility"
BASELINE = "baseline"
THRESHOLD = "threshold"
CHAMPION = "champion"
NOTE = "note"  # said in the table, decides nothing

_REGISTERED_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,255}")


@dataclass(frozen=True)
class GatePolicy:
    """``promote.*``: what a candidate must reach, and by how much it must beat the champion."""

    metric: str = "roc_auc_ovo"
    higher_is_better: bool = True
    thresholds: Mapping[str, float] = field(default_factory=dict)
    min_improvement: float = 0.0
    force: bool = False
    baseline_margin: float = 0.0

    @classmethod
    def from_config(cls, promote: Any, task: str = "classification") -> GatePolicy:
        """From the ``promote`` config section (a DictConfig or a mapping), for a model of
        ``task`` (``promote.metric=auto`` is the task's metric)."""
        from trainflow.ml.evaluate import metric_direction, task_metric

        metric = task_metric(str(promote["metric"]), task)
        return cls(
            metric=metric,
            higher_is_better=metric_direction(metric, promote.get("higher_is_better")),
            thresholds={str(k): float(v) for k, v in dict(promote["thresholds"]).items()},
            min_improvement=float(promote["min_improvement"]),
            force=bool(promote["force"]),
            baseline_margin=float(promote.get("baseline_margin", 0.0)),
        )

    @property
    def comparison(self) -> str:
        return ">=" if self.higher_is_better else "<="

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "thresholds": dict(self.thresholds),
            "min_improvement": self.min_improvement,
            "force": self.force,
            "baseline_margin": self.baseline_margin,
        }


def check_gate_fits_task(promote: Any, task: str) -> None:
    """Fail when the gate names metrics the task never reports: before training when the
    task is configured, or once the data decided it (``model.task=auto``)."""
    from trainflow.ml.evaluate import is_task_metric

    policy = GatePolicy.from_config(promote, task)
    foreign = [m for m in (policy.metric, *policy.thresholds) if not is_task_metric(m, task)]
    if foreign:
        example = (
            "promote.metric=auto promote.thresholds={} (or +promote.thresholds.r2=0.5)"
            if task == "regression"
            else "promote.metric=auto promote.thresholds={} (or +promote.thresholds.roc_auc_ovo=0.9)"
        )
        raise ConfigError(
            f"promote gate uses {', '.join(sorted(set(foreign)))}, which model.task={task} does not report; "
            f"set the gate for this task, e.g. {example}"
        )


def validate_promote(promote: Any) -> None:
    """Checks on the ``promote`` section the schema's types cannot express."""
    if not str(promote["metric"]):
        raise ConfigError("promote.metric is empty: name the test metric to compare models by (e.g. r2), or auto")
    policy = GatePolicy.from_config(promote)
    for key, what in (("min_improvement", "the champion"), ("baseline_margin", "the trivial baseline")):
        margin = getattr(policy, key)
        if not math.isfinite(margin) or margin < 0:
            raise ConfigError(
                f"promote.{key}={margin} must be a finite number >= 0 (the margin, in units of promote.metric, "
                f"by which a candidate must beat {what}), e.g. 0.005"
            )
    for name, bound in policy.thresholds.items():
        if not math.isfinite(bound):
            raise ConfigError(f"promote.thresholds.{name}={bound} must be a finite number")
    from trainflow.ml.evaluate import check_direction

    alias = str(promote["alias"])
    if alias in (LATEST, CANDIDATE_ALIAS):
        # Both move with every new model (the store, train_model): a gated alias must not.
        raise ConfigError(
            f"promote.alias={alias} is moved by every {'logged version' if alias == LATEST else 'train_model run'}; "
            "name the production alias something else, e.g. prod or staging"
        )
    # A score compared as an error would promote worse models, and the other way round.
    check_direction(str(promote["metric"]), promote.get("higher_is_better"), "promote")
    name = str(promote["registered_model_name"])
    if not _REGISTERED_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"promote.registered_model_name={name!r} is not a usable MLflow registered model name: use letters, "
            "digits, '.', '_' and '-' (it appears in URIs like models:/<name>@prod), e.g. penguins-species"
        )


@dataclass(frozen=True)
class Criterion:
    name: str
    value: str
    bound: str
    passed: bool | None  # None: not evaluated (an earlier criterion already refused)
    kind: str = ELIGIBILITY
    forced: bool = False  # failed, but promote.force overrode it

    @property
    def verdict(self) -> str:
        if self.kind == NOTE:
            return "note"
        if self.passed is None:
            return "-"
        if self.forced:
            return "FAIL (forced)"
        return "pass" if self.passed else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.name,
            "value": self.value,
            "bound": self.bound,
            "passed": self.passed,
            "kind": self.kind,
            "forced": self.forced,
        }


def format_table(rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


@dataclass(frozen=True)
class Decision:
    model: str
    criteria: tuple[Criterion, ...]
    outcome: str = PROMOTED
    test_set: str = ""
    champion: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    champion_metrics: Mapping[str, float] = field(default_factory=dict)
    forced: bool = False  # promoted only because promote.force overrode the champion comparison
    policy: GatePolicy = field(default_factory=GatePolicy)

    @property
    def promote(self) -> bool:
        return self.outcome == PROMOTED

    @property
    def ineligible(self) -> bool:
        """Refused before any comparison: untested on this test set, or metrics missing or not
        finite. That needs fixing; failing the baseline or a bound is an outcome."""
        return any(c.kind == ELIGIBILITY and c.passed is False for c in self.criteria)

    def table(self) -> str:
        rows = [("criterion", "value", "bound", "verdict")]
        rows += [(c.name, c.value, c.bound, c.verdict) for c in self.criteria]
        return format_table(rows)

    def failures(self) -> str:
        """The failed criteria that decided the outcome, as ``name is value, needs bound``."""
        failed = [c for c in self.criteria if c.passed is False]
        if self.outcome == REFUSED:
            failed = [c for c in failed if c.kind != CHAMPION]
        return "; ".join(f"{c.name} is {c.value}, needs {c.bound}" for c in failed)

    def as_record(self) -> dict[str, Any]:
        """JSON-friendly: what the promotion history keeps."""
        return {
            "outcome": self.outcome,
            "model": self.model,
            "test_set": self.test_set,
            "champion": self.champion,
            "metrics": dict(self.metrics),
            "champion_metrics": dict(self.champion_metrics),
            "forced": self.forced,
            "policy": self.policy.as_dict(),
            "criteria": [c.as_dict() for c in self.criteria],
        }


def tested_metrics(version: ArtifactVersion) -> tuple[str | None, dict[str, Any]]:
    """``(test set ref, metrics)`` that ``test_model`` recorded on a version, or ``(None, {})``."""
    record = version.metadata.get("test") or {}
    return record.get("test_data"), dict(record.get("metrics") or {})


def baseline_metrics(version: ArtifactVersion) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trivial baseline's metrics ``test_model`` recorded beside the version's (same
    test set), and the bootstrapped gap on the gate's metric (trainflow.ml.evaluate.baseline_gap);
    empty for a model tested before baselines were."""
    record = version.metadata.get("test") or {}
    return dict(record.get("baseline_metrics") or {}), dict(record.get("baseline_gap") or {})


def input_columns(version: ArtifactVersion) -> set[str]:
    """The raw columns a model reads (its recorded feature lists)."""
    return {str(c) for columns in (version.metadata.get("features") or {}).values() for c in columns}


def column_difference(candidate: ArtifactVersion, champion: ArtifactVersion) -> str | None:
    """How the candidate's input columns differ from the champion's, or None if they do not."""
    mine, theirs = input_columns(candidate), input_columns(champion)
    if not mine or not theirs or mine == theirs:
        return None

    def named(columns: set[str]) -> str:
        shown = sorted(columns)
        return ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")

    parts = [
        f"+{len(mine - theirs)} ({named(mine - theirs)})" if mine - theirs else "",
        f"-{len(theirs - mine)} ({named(theirs - mine)})" if theirs - mine else "",
    ]
    return " ".join(part for part in parts if part)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metrics_summary(metrics: Mapping[str, Any], shown: Sequence[str]) -> str:
    """``roc_auc_ovo=0.9663, accuracy=0.7826 (+8 more)``: the ``shown`` metrics that were
    recorded and every one that is not finite, so a table row stays readable with per-class
    metrics; the decision's record keeps them all."""
    if not metrics:
        return "none"
    names = [name for name in dict.fromkeys(shown) if name in metrics]
    names += [name for name in sorted(metrics) if name not in names and not _finite(metrics[name])]
    text = ", ".join(f"{name}={_show(metrics[name])}" for name in names)
    rest = len(metrics) - len(names)
    if not text:
        return f"{rest} recorded"
    return f"{text} (+{rest} more)" if rest else text


def _finite(value: Any) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)


def _show(value: Any) -> str:
    number = _number(value)
    return "missing" if value is None else (f"{number:.4f}" if number is not None else repr(value))


def prediction_mismatch(candidate: ArtifactVersion, champion: ArtifactVersion) -> str | None:
    """Why the two models cannot be compared at all (they predict different columns, or one
    classifies and the other regresses), or None. Models trained before these were recorded
    say nothing about them and are not held to it."""
    differences = [
        f"{key} {champion.metadata[key]!r} vs. {candidate.metadata[key]!r}"
        for key in ("target", "task")
        if champion.metadata.get(key) is not None
        and candidate.metadata.get(key) is not None
        and champion.metadata[key] != candidate.metadata[key]
    ]
    return "; ".join(differences) or None


def needs_rescore(champion: ArtifactVersion, test_set: str, policy: GatePolicy) -> bool:
    """Whether the champion's stored metrics cannot be compared on ``test_set``."""
    tested_on, metrics = tested_metrics(champion)
    value = _number(metrics.get(policy.metric))
    return tested_on != test_set or value is None or not math.isfinite(value)


def decide(
    model: ArtifactVersion,
    current_test_set: ArtifactVersion | str,
    policy: GatePolicy | None = None,
    champion: ArtifactVersion | None = None,
) -> Decision:
    """The gate. ``champion`` is the version holding the alias now (None if none does);
    its metrics must be on ``current_test_set`` to be compared (see :func:`needs_rescore`).
    """
    # Imported here, as in check_gate_fits_task: evaluate loads numpy and pandas, which the
    # history and rollback commands that import this module do not need.
    from trainflow.ml.evaluate import HEADLINE_METRICS, higher_is_better

    policy = policy or GatePolicy()
    test_set = current_test_set if isinstance(current_test_set, str) else current_test_set.ref
    tested_on, metrics = tested_metrics(model)
    criteria: list[Criterion] = [
        Criterion("tested on current test set", tested_on or "never tested", test_set, tested_on == test_set),
    ]
    finite = bool(metrics) and all(_finite(v) for v in metrics.values())
    criteria.append(
        Criterion(
            "test metrics recorded and finite",
            metrics_summary(metrics, [policy.metric, *policy.thresholds, *chain(*HEADLINE_METRICS.values())]),
            "all finite",
            finite,
        )
    )
    eligible = all(c.passed for c in criteria)

    for name, bound in policy.thresholds.items():
        value = _number(metrics.get(name))
        if not eligible:
            passed = None
        elif value is None or not math.isfinite(value):
            passed = False
        else:
            # Each metric's own direction: a score's bound is a minimum, an error's a maximum,
            # whichever metric the champion comparison uses.
            passed = value >= bound if higher_is_better(name) else value <= bound
        criteria.append(
            Criterion(
                name,
                _show(metrics.get(name)) if eligible else "-",
                f"{'>=' if higher_is_better(name) else '<='} {bound:g}",
                passed,
                THRESHOLD,
            )
        )

    candidate_value = _number(metrics.get(policy.metric))
    if eligible and (candidate_value is None or not math.isfinite(candidate_value)):
        recorded = ", ".join(sorted(metrics)) or "none"
        criteria.append(
            Criterion(f"{policy.metric} recorded (promote.metric)", "missing", f"one of: {recorded}", False)
        )
        eligible = False
    criteria.append(_baseline_criterion(policy, candidate_value, *baseline_metrics(model), eligible))

    champion_metrics: dict[str, Any] = {}
    forced = False
    if champion is None:
        decided = True if eligible else None
        criteria.append(Criterion("champion", "none yet", "baseline and bounds decide", decided, CHAMPION))
    elif champion.ref == model.ref:
        criteria.append(
            Criterion(
                "champion", f"{model.ref} (this model)", "a different version", False if eligible else None, CHAMPION
            )
        )
    else:
        champion_tested_on, champion_metrics = tested_metrics(champion)
        champion_value = _number(champion_metrics.get(policy.metric))
        name = f"{policy.metric} vs champion {champion.ref}"
        columns = column_difference(model, champion)
        if columns:
            criteria.append(Criterion("input columns vs champion", columns, "the champion's", None, NOTE))
        if not eligible:
            criteria.append(Criterion(name, "-", "-", None, CHAMPION))
        elif champion_tested_on != test_set or champion_value is None or not math.isfinite(champion_value):
            criteria.append(
                Criterion(
                    name, _show(candidate_value), f"champion scored on {test_set}", False, CHAMPION, forced=policy.force
                )
            )
        else:
            assert candidate_value is not None  # eligible: the candidate's value was found finite above
            gain = candidate_value - champion_value if policy.higher_is_better else champion_value - candidate_value
            sign = "+" if policy.higher_is_better else "-"
            margin = policy.min_improvement
            if margin > 0:
                target = champion_value + (margin if policy.higher_is_better else -margin)
                required = f"{policy.comparison} {target:.4f} (champion {champion_value:.4f} {sign} {margin:g})"
            else:
                required = f"{'>' if policy.higher_is_better else '<'} {champion_value:.4f} (champion)"
            # Strictly better, and by the margin; a tiny tolerance so 0.98 - 0.97 >= 0.01 holds.
            passed = gain > 0 and gain >= policy.min_improvement - 1e-12
            criteria.append(
                Criterion(
                    name, f"{candidate_value:.4f}", required, passed, CHAMPION, forced=not passed and policy.force
                )
            )

    if any(c.passed is False for c in criteria if c.kind not in (CHAMPION, NOTE)):
        outcome = REFUSED
    elif any(c.passed is False for c in criteria if c.kind == CHAMPION):
        if champion is not None and champion.ref != model.ref and policy.force:
            outcome, forced = PROMOTED, True
        else:
            outcome = CHAMPION_KEPT
    else:
        outcome = PROMOTED
    return Decision(
        model=model.ref,
        criteria=tuple(criteria),
        outcome=outcome,
        test_set=test_set,
        champion=champion.ref if champion is not None else None,
        metrics={k: v for k, v in metrics.items()},
        champion_metrics=champion_metrics,
        forced=forced,
        policy=policy,
    )


def _baseline_criterion(
    policy: GatePolicy, candidate: float | None, baseline: Mapping[str, Any], gap: Mapping[str, Any], eligible: bool
) -> Criterion:
    """Whether the candidate beats the trivial baseline on ``policy.metric`` by its margin:
    surely (the gap's 95% lower bound from test_model's bootstrap) when that was measured
    for this metric, else by the observed gap."""
    name = f"{policy.metric} vs baseline"
    value = _number(baseline.get(policy.metric))
    if not eligible or candidate is None:
        return Criterion(name, "-", "-", None, BASELINE)
    if value is None or not math.isfinite(value):
        # A model tested before baselines were recorded: nothing to compare with.
        return Criterion(name, f"{candidate:.4f}", "baseline not recorded", None, BASELINE)
    margin = policy.baseline_margin
    observed = candidate - value if policy.higher_is_better else value - candidate
    lower = _number(gap.get("lower")) if gap.get("metric") == policy.metric else None
    if lower is not None and math.isfinite(lower):
        return Criterion(
            name,
            f"{candidate:.4f}, gap {observed:+.4f} (95% lower bound {lower:+.4f})",
            f"gap >= {margin:g} at 95% (baseline {value:.4f})",
            observed > 0 and lower >= margin - 1e-12,
            BASELINE,
        )
    target = value + margin if policy.higher_is_better else value - margin
    sign = "+" if policy.higher_is_better else "-"
    bound = f"{policy.comparison} {target:.4f} (baseline {value:.4f} {sign} {margin:g})"
    return Criterion(name, f"{candidate:.4f}", bound, observed > 0 and observed >= margin - 1e-12, BASELINE)


def rollback_target(moves: Iterable[tuple[int, int | None, str | None]], rollback_runs: set[str]) -> int | None:
    """The version a rollback returns to, from an alias's moves ``(version, previous, run id)``, oldest first.

    The alias's holders form a stack: a promotion (or a manual move) pushes the new
    holder, a rollback pops the current one. So rolling back twice after promoting v0,
    v1 and v2 returns to v1, then v0, instead of toggling between the last two.
    """
    stack: list[int] = []
    for version, _previous, run_id in moves:
        if run_id is not None and run_id in rollback_runs and len(stack) >= 2 and stack[-2] == version:
            stack.pop()
        elif not stack or stack[-1] != version:
            stack.append(version)
    return stack[-2] if len(stack) >= 2 else None
