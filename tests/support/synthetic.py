"""Seeded synthetic training tables with every feature kind trainflow handles.

One call gives numeric columns (some carrying signal, some noise), two string
categorical columns (one informative), a short free-text column whose words come from
class- or topic-dependent vocabularies (so TF-IDF has something to find), ISO date
strings, a unique ``row_id`` and missing values sprinkled over the feature columns.
Optionally: a high-cardinality string column (``account``, thousands of levels with
skewed frequencies, partly informative), imbalanced classes and rows without a target.
Tests use small tables; benchmarks use millions of rows, so everything is vectorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainflow.ml.train import TASKS, FeatureSpec

TARGET = "target"
ID_COLUMN = "row_id"
NUMERIC = ["signal_1", "signal_2", "noise_1", "noise_2"]
CATEGORICAL = ["color", "region"]
TEXT = ["notes"]
DATETIME = ["event_date"]
HIGH_CARDINALITY = "account"
# Which feature columns carry information about the target (the rest is noise).
INFORMATIVE = ["signal_1", "signal_2", "color", "notes", "event_date"]

COLORS = ("red", "green", "blue", "yellow", "purple")
REGIONS = ("north", "south", "east", "west")
# Words any row may use, whatever its class or topic.
COMMON_WORDS = ("the", "report", "customer", "said", "about", "order", "today", "again", "with", "item")
# One vocabulary per class (classification) or topic (regression); beyond these,
# vocabularies repeat with the group number appended, so they stay disjoint.
TOPIC_WORDS = (
    ("storm", "thunder", "flood", "rain"),
    ("harvest", "wheat", "barn", "tractor"),
    ("engine", "piston", "gear", "valve"),
    ("garden", "tulip", "hedge", "seedling"),
    ("market", "price", "stock", "trader"),
    ("river", "canoe", "bridge", "ferry"),
)
MIN_WORDS, MAX_WORDS = 3, 6
TOPIC_WORD_PROBABILITY = 0.12
REGRESSION_TOPICS = 3
FIRST_DATE = np.datetime64("2020-01-01", "D")
DATE_SPAN_DAYS = 3 * 365


def feature_spec_for_synthetic() -> FeatureSpec:
    """The :class:`FeatureSpec` naming :func:`make_table`'s feature columns by kind."""
    return FeatureSpec(numeric=list(NUMERIC), categorical=list(CATEGORICAL), text=list(TEXT), datetime=list(DATETIME))


def make_table(
    n_rows: int,
    task: str = "classification",
    n_classes: int = 3,
    seed: int = 0,
    missing_fraction: float = 0.05,
    class_weights: tuple[float, ...] | None = None,
    high_cardinality: int = 0,
    missing_target_fraction: float = 0.0,
) -> pd.DataFrame:
    """A seeded table of ``n_rows`` rows: the feature columns of
    :func:`feature_spec_for_synthetic`, ``row_id`` and ``target``.

    ``class_weights`` (classification) makes the classes that unequal (e.g. ``(0.9, 0.1)``);
    ``high_cardinality`` adds the string column ``account`` with that many levels, Zipf-like
    in frequency, each level leaning to one class or shifting the target;
    ``missing_target_fraction`` of the rows get no target (None / NaN).

    For classification ``target`` holds ``"class_0"`` .. ``"class_{n_classes-1}"`` and the
    features are drawn conditionally on the class; for regression it is a float, a noisy
    function of the numeric, categorical, text and date features. Each feature column
    (not ``row_id``, not ``target``) has about ``missing_fraction`` of its values missing:
    NaN in numeric columns, None in string columns. The same arguments always give the
    same table.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}")
    if n_rows < 1:
        raise ValueError(f"n_rows={n_rows} must be at least 1")
    if task == "classification" and n_classes < 2:
        raise ValueError(f"n_classes={n_classes} must be at least 2 for classification")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction={missing_fraction} must be in [0, 1)")
    if class_weights is not None and (len(class_weights) != n_classes or min(class_weights) <= 0):
        raise ValueError(f"class_weights={class_weights} must be {n_classes} positive numbers")

    rng = np.random.default_rng(seed)
    n_groups = n_classes if task == "classification" else REGRESSION_TOPICS
    # The latent group: the class for classification, the text topic for regression.
    if task == "classification" and class_weights:
        group = rng.choice(n_groups, size=n_rows, p=np.asarray(class_weights, dtype=float) / sum(class_weights))
    else:
        group = rng.integers(0, n_groups, size=n_rows)
    # Drawn here, before the task's own draws, only when asked for: tables without it stay as they were.
    account = _accounts(rng, group, n_groups, high_cardinality) if high_cardinality else None

    noise_1 = rng.normal(0.0, 1.0, n_rows)
    noise_2 = rng.normal(5.0, 2.0, n_rows)
    region = np.asarray(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), n_rows)]
    notes = _texts(rng, group, n_groups)

    if task == "classification":
        # Class means on a circle: each class sits apart from every other in (signal_1, signal_2).
        angle = 2.0 * np.pi * group / n_classes
        signal_1 = rng.normal(0.8 * np.cos(angle), 1.0)
        signal_2 = rng.normal(0.8 * np.sin(angle), 1.0)
        # Each class prefers one color; the rest of the time the color is random.
        preferred = group % len(COLORS)
        color_code = np.where(rng.random(n_rows) < 0.3, preferred, rng.integers(0, len(COLORS), n_rows))
        # Each class's events cluster in its own stretch of the date range.
        centre = (group + 0.5) * DATE_SPAN_DAYS / n_classes
        days = np.clip(rng.normal(centre, DATE_SPAN_DAYS / n_classes), 0, DATE_SPAN_DAYS - 1)
        days = days.astype(np.int64)
        target = np.char.add("class_", group.astype(str)).astype(object)
    else:
        signal_1 = rng.normal(0.0, 1.0, n_rows)
        signal_2 = rng.normal(0.0, 1.0, n_rows)
        color_code = rng.integers(0, len(COLORS), n_rows)
        days = rng.integers(0, DATE_SPAN_DAYS, n_rows)
        color_effect = np.linspace(-1.5, 1.5, len(COLORS))[color_code]
        topic_effect = np.linspace(-1.5, 1.5, n_groups)[group]
        target = (
            2.0 * signal_1
            - 1.0 * signal_2
            + 0.5 * signal_1 * signal_2
            + color_effect
            + topic_effect
            + 3.0 * (days / DATE_SPAN_DAYS - 0.5)
            + rng.normal(0.0, 1.0, n_rows)
        )
        if account is not None:  # each account shifts the target by its own amount
            target = target + np.sin(account.astype(np.float64))
    color = np.asarray(COLORS, dtype=object)[color_code]
    dates = np.datetime_as_string(FIRST_DATE + days.astype("timedelta64[D]"), unit="D").astype(object)

    def gaps() -> np.ndarray:
        return rng.random(n_rows) < missing_fraction

    columns: dict[str, np.ndarray] = {
        "signal_1": np.where(gaps(), np.nan, signal_1),
        "signal_2": np.where(gaps(), np.nan, signal_2),
        "noise_1": np.where(gaps(), np.nan, noise_1),
        "noise_2": np.where(gaps(), np.nan, noise_2),
        "color": np.where(gaps(), None, color),
        "region": np.where(gaps(), None, region),
        "notes": np.where(gaps(), None, notes),
        "event_date": np.where(gaps(), None, dates),
    }
    if account is not None:
        names = np.char.add("acct-", np.char.zfill(account.astype(str), 5)).astype(object)
        columns[HIGH_CARDINALITY] = np.where(gaps(), None, names)
    frame = pd.DataFrame({ID_COLUMN: np.arange(n_rows, dtype=np.int64), **columns})
    frame[TARGET] = target
    if missing_target_fraction:
        frame.loc[rng.random(n_rows) < missing_target_fraction, TARGET] = None
    return frame


def _accounts(rng: np.random.Generator, group: np.ndarray, n_groups: int, levels: int) -> np.ndarray:
    """Level numbers 0..levels-1 with Zipf-like frequencies (a few accounts are most of the
    rows); 40% of rows take a level that belongs to their group (level % n_groups), so the
    column carries signal that only a model using its levels finds."""
    ranks = np.arange(1, levels + 1, dtype=np.float64)
    p = 1.0 / ranks**1.1
    drawn = rng.choice(levels, size=len(group), p=p / p.sum())
    own = drawn - drawn % n_groups + group
    own = np.where(own < levels, own, group)
    return np.where(rng.random(len(group)) < 0.4, own, drawn)


def _vocabulary(group: int) -> tuple[str, ...]:
    words = TOPIC_WORDS[group % len(TOPIC_WORDS)]
    cycle = group // len(TOPIC_WORDS)
    return words if cycle == 0 else tuple(f"{word}{cycle}" for word in words)


def _texts(rng: np.random.Generator, group: np.ndarray, n_groups: int) -> np.ndarray:
    """``MIN_WORDS``..``MAX_WORDS`` words per row, each from the row's group vocabulary
    with probability ``TOPIC_WORD_PROBABILITY``, else from ``COMMON_WORDS``."""
    n_rows = len(group)
    topic_size = len(TOPIC_WORDS[0])
    # One lookup table: common words first, then each group's vocabulary, each word
    # with a leading space so that concatenating positions joins them.
    lookup = [" " + word for word in COMMON_WORDS]
    for g in range(n_groups):
        lookup += [" " + word for word in _vocabulary(g)]
    table = np.asarray(lookup + [""], dtype=np.dtypes.StringDType())
    empty = len(lookup)

    length = rng.integers(MIN_WORDS, MAX_WORDS + 1, n_rows)
    from_topic = rng.random((n_rows, MAX_WORDS)) < TOPIC_WORD_PROBABILITY
    common_index = rng.integers(0, len(COMMON_WORDS), (n_rows, MAX_WORDS))
    topic_index = len(COMMON_WORDS) + group[:, None] * topic_size + rng.integers(0, topic_size, (n_rows, MAX_WORDS))
    index = np.where(from_topic, topic_index, common_index)
    index[np.arange(MAX_WORDS)[None, :] >= length[:, None]] = empty

    text = table[index[:, 0]]
    for position in range(1, MAX_WORDS):
        text = np.strings.add(text, table[index[:, position]])
    return np.strings.slice(text, 1, None).astype(object)  # drop the leading space
