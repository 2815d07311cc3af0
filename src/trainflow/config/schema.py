"""The one config schema: ``config.yaml`` holds the values, these dataclasses the types.

Hydra validates every composed config against :class:`TrainflowConfig`, so a misspelt
key or a value of the wrong type fails at start with the key's name. The checks Hydra
cannot express (ranges, choices, estimator parameters) live in :func:`validate`.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import unquote, urlparse

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trainflow.config.components import is_repository_uri
from trainflow.errors import ConfigError, TrainflowError
from trainflow.logs import LEVELS
from trainflow.sections import section_dict
from trainflow.store.refs import parse_ref, validate_alias, validate_project

# Hydra (50 ms) is imported inside the functions that compose or parse overrides, and trainflow.ml and
# trainflow.datacheck (pandas, 0.3 s) inside validate: `import trainflow.config.schema` pays neither, and
# `python main.py --help` (through trainflow.cli.help) not pandas (docs/architecture.md#start-up).

SCHEMA_NAME = "trainflow_schema"
ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")
BACKENDS = ("local", "wandb", "auto")


@dataclass
class MainConfig:
    steps: str = MISSING
    experiment_name: str = MISSING
    env_manager: str = MISSING
    components_repository: str = MISSING
    components_version: Optional[str] = None
    # false: run every step even when an earlier run could stand in for it (trainflow.pipeline.cache)
    cache: bool = MISSING
    select_best: bool = MISSING
    # true: with env_manager local and local components, steps run inside the pipeline's
    # process (no per-step interpreter and imports); false: one `mlflow run` per step
    in_process: bool = MISSING
    # the level of trainflow's messages: DEBUG | INFO | WARNING | ERROR (trainflow.logs)
    log_level: str = MISSING


@dataclass
class SweepConfig:
    metric: str = MISSING  # auto: the task's (trainflow.ml.evaluate.DEFAULT_METRICS)
    higher_is_better: Optional[bool] = None  # None: the metric's own direction
    n_jobs: int = MISSING


@dataclass
class ArtifactsConfig:
    backend: str = MISSING
    root: str = MISSING


@dataclass
class WandbConfig:
    # config.yaml's defaults come from WANDB_PROJECT / WANDB_ENTITY / WANDB_RUN_GROUP (oc.env);
    # a null entity is W&B's default, a null group the pipeline's own (pipeline-<run id>).
    project: str = MISSING
    entity: Optional[str] = None
    group: Optional[str] = None
    offline_runs: bool = MISSING
    timeout_seconds: int = MISSING
    registry: Optional[str] = MISSING  # the W&B Registry promote_model links to; None: no link


@dataclass
class TableLimitsConfig:
    # What a table file may hold before it is parsed (trainflow.ml.table_file.TableLimits)
    max_columns: int = MISSING
    max_header_bytes: int = MISSING
    max_line_bytes: int = MISSING
    max_cells: int = MISSING


@dataclass
class DataConfig:
    uri: str = MISSING
    sha256: Optional[str] = None
    target: str = MISSING
    # true: a URL without data.sha256 counts as unchanged while its ETag/Last-Modified are
    cache_remote: bool = MISSING
    # Larger sources are refused before or while they are fetched (trainflow.ml.data.fetch)
    max_bytes: int = MISSING
    limits: TableLimitsConfig = field(default_factory=TableLimitsConfig)


@dataclass
class SplitConfig:
    test_size: float = MISSING
    val_size: float = MISSING
    random_seed: int = MISSING
    stratify_by: Optional[str] = None


@dataclass
class TextFeaturesConfig:
    columns: list[str] = MISSING
    max_features: int = MISSING
    components: int = MISSING


@dataclass
class ImputationConfig:
    numeric: str = MISSING
    categorical: str = MISSING


@dataclass
class FeaturesConfig:
    infer: bool = MISSING
    numeric: list[str] = MISSING
    categorical: list[str] = MISSING
    text: TextFeaturesConfig = field(default_factory=TextFeaturesConfig)
    datetime: list[str] = MISSING
    imputation: ImputationConfig = field(default_factory=ImputationConfig)
    categorical_encoding: str = MISSING
    max_categories: int = MISSING
    high_cardinality: int = MISSING
    max_dense_bytes: int = MISSING


@dataclass
class ModelConfig:
    task: str = MISSING  # auto | classification | regression
    estimator: str = MISSING
    serialization: str = MISSING
    trusted_types: list[str] = MISSING
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    random_forest: dict[str, Any] = MISSING
    hist_gradient_boosting: dict[str, Any] = MISSING
    logistic_regression: dict[str, Any] = MISSING
    ridge: dict[str, Any] = MISSING
    # model.estimator=custom: instantiated by Hydra from its _target_ (trainflow.ml.train)
    custom: dict[str, Any] = MISSING


@dataclass
class TestConfig:
    model: str = MISSING


@dataclass
class PromoteConfig:
    model: str = MISSING
    alias: str = MISSING
    # The promotion gate (trainflow.promotion.gate) and the MLflow Model Registry
    metric: str = MISSING  # auto: the task's (trainflow.ml.evaluate.DEFAULT_METRICS)
    higher_is_better: Optional[bool] = None  # None: the metric's own direction
    baseline_margin: float = MISSING
    thresholds: dict[str, float] = MISSING
    min_improvement: float = MISSING
    force: bool = MISSING
    fail_if_not_promoted: bool = MISSING
    registered_model_name: str = MISSING


@dataclass
class BatchPredictConfig:
    model: str = MISSING
    input: str = MISSING


@dataclass
class RowCountExpectation:
    min: Optional[int] = None
    max: Optional[int] = None


@dataclass
class ExpectationsConfig:
    # column -> {dtype, nullable, allowed, min, max}; checked by trainflow.datacheck.checks, not typed
    # here, so that a column can be added on the command line: +data_check...columns.x={dtype:int}
    columns: dict[str, Any] = field(default_factory=dict)
    row_count: RowCountExpectation = field(default_factory=RowCountExpectation)
    classes: Optional[list[Any]] = None
    extra_columns: str = "warn"


@dataclass
class DriftConfig:
    alpha: float = MISSING
    correction: str = MISSING
    max_categories: int = MISSING
    max_psi: float = MISSING


@dataclass
class FailOnConfig:
    schema: str = MISSING
    generic: str = MISSING
    drift: str = MISSING


@dataclass
class DataCheckConfig:
    expectations: Optional[ExpectationsConfig] = None
    min_class_count: int = MISSING
    max_duplicate_fraction: Optional[float] = None  # None: duplicates only warn
    drift: DriftConfig = field(default_factory=DriftConfig)
    fail_on: FailOnConfig = field(default_factory=FailOnConfig)
    reference_alias: str = MISSING


@dataclass
class TrainflowConfig:
    # Names the table's artifacts, champion and registered model (derived by default: project_name)
    project: str = MISSING
    main: MainConfig = field(default_factory=MainConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    test: TestConfig = field(default_factory=TestConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)
    data_check: DataCheckConfig = field(default_factory=DataCheckConfig)
    batch_predict: BatchPredictConfig = field(default_factory=BatchPredictConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def register_schema() -> None:
    """Make the schema available to ``config.yaml``'s defaults list, and the resolver its
    ``project`` key calls."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainflowConfig)
    # hydra/launcher=ray (trainflow/conf) is checked against Hydra's Ray launcher's schema of the
    # same name, as meant: Hydra 1.3 still does so, and says it is deprecated on every sweep.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema")
    if not OmegaConf.has_resolver(PROJECT_RESOLVER):
        OmegaConf.register_new_resolver(PROJECT_RESOLVER, project_name)


PROJECT_RESOLVER = "trainflow.project"
_NOT_IN_NAME = re.compile(r"[^a-z0-9_.]+")


def project_name(uri: str, target: str) -> str:
    """The project a table and target belong to unless ``project`` is set: the file's name
    without its extensions and the target, as one lowercase name (``data/penguins.csv``,
    ``species`` -> ``penguins-species``), valid as a store, W&B and registry name."""
    path = urlparse(uri).path if "://" in uri else uri
    stem = Path(unquote(path)).name.split(".")[0] or "data"

    def slug(text: str) -> str:
        return _NOT_IN_NAME.sub("-", text.lower()).strip("-.") or "x"

    return f"{slug(stem)}-{slug(target)}"[:64].rstrip("-.")


# Overrides that name a table other than the data set's (dataset_choice).
_TABLE_KEYS = ("data.uri=", "data.target=")


def dataset_choice(overrides: Sequence[str]) -> list[str]:
    """``overrides``, plus ``~dataset`` when they name a table (``data.uri``/``data.target``)
    without choosing a data set: then the demo's settings (its column expectations, gate
    bounds) must not apply to someone else's table, and config.yaml's generic ones do."""
    keys = [o.lstrip("+") for o in overrides]
    names_table = any(k.startswith(_TABLE_KEYS) for k in keys)
    chooses = any(re.match(r"~?dataset(@[\w.]*)?(=|$)", k) for k in keys)
    return [*overrides, "~dataset"] if names_table and not chooses else list(overrides)


def load_config(project_dir: Path, overrides: list[str] | None = None) -> DictConfig:
    """Compose the project's ``config.yaml`` with Hydra overrides, as ``main.py`` does."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    register_schema()
    overrides = dataset_choice(overrides or [])
    try:
        with initialize_config_dir(config_dir=str(project_dir.resolve()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        messages = [str(error)] + ([str(error.__cause__)] if error.__cause__ else [])
        detail = [
            line.strip()
            for message in messages
            for line in message.splitlines()
            if line.strip() and not line.strip().startswith(("full_key:", "reference_type=", "object_type="))
        ]
        hint = "keys and types are in config.yaml"
        if any(o.startswith("main.steps=") for o in overrides or []) and "main.steps" in " ".join(detail):
            hint = "write the steps as one quoted string, e.g. main.steps='fetch_data,check_data'"
        raise ConfigError(f"bad configuration override: {' '.join(detail)} ({hint})") from None
    check_table_named(cfg)
    return cfg


def check_table_named(cfg: DictConfig) -> None:
    """Fail in one line when no table or no target is named (no data set chosen)."""
    missing = [key for key in ("uri", "target") if OmegaConf.is_missing(cfg.data, key)]
    if not missing:
        return
    named = {"uri": "the table", "target": "the column to predict"}
    raise ConfigError(
        f"data.{missing[0]} is not set: naming a table or a target on the command line drops the demo data set's "
        f"settings, so name {' and '.join(named[k] for k in missing)} too, e.g. "
        + " ".join({"uri": "data.uri=data/penguins.csv", "target": "data.target=species"}[k] for k in missing)
        + " (or choose a data set: dataset=penguins)"
    )


def check_sweep_overrides(project_dir: Path, overrides: list[str]) -> None:
    """Compose the config with every value of every swept key (``a=1,2``, ``choice``,
    ``range``) at least once, so that a misspelt key or a value of the wrong type fails
    in one line before the sweep starts, where Hydra would stop the launcher at that job
    with several lines and no summary. Values of a valid type (``n_estimators=0``) are
    left to each trial, which fails alone. Glob and interval sweeps are Hydra's to judge."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(f"bad configuration override: {' '.join(str(error).split())}") from None
    fixed: list[str] = []
    swept: list[tuple[str, list[str]]] = []
    for override in parsed:
        if not override.is_sweep_override():
            fixed.append(str(override.input_line))  # set for every override parsed from text
        elif override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP, ValueType.RANGE_SWEEP):
            values = list(override.sweep_string_iterator())
            if values:
                swept.append((override.get_key_element(), values))
    rounds = max((len(values) for _, values in swept), default=1)
    for i in range(rounds):
        load_config(project_dir, fixed + [f"{key}={values[min(i, len(values) - 1)]}" for key, values in swept])


def is_group_override(argument: str) -> bool:
    """``hydra/launcher=joblib`` (a config group: a path with ``/``), not ``model.x=1`` (a key)."""
    return re.fullmatch(r"[+~]*[\w.-]+(/[\w.-]+)+(@[\w.]*)?=.*", argument, re.DOTALL) is not None


def check_config_groups(project_dir: Path, overrides: list[str]) -> None:
    """Fail in one line on a config group override naming a group or an option that does not
    exist (``hydra/launcher=bogus``), where Hydra prints a dozen lines. Checked against the
    options Hydra itself would search (its own, its plugins', this project's), in run and
    sweep mode alike, without composing the config."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import HydraException

    register_schema()
    with initialize_config_dir(config_dir=str(project_dir.resolve()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for argument in overrides:
            try:
                [override] = OverridesParser.create().parse_overrides([argument])
            except HydraException as error:
                raise ConfigError(f"bad configuration override {argument!r}: {' '.join(str(error).split())}") from None
            group = override.key_or_group
            if override.is_add() and group in _hydra_selected_groups():
                # Hydra's answer names the defaults-list syntax, not the command line's.
                raise ConfigError(
                    f"bad configuration override {argument!r}: {group} already has a value, so '+' cannot add one; "
                    f"drop the '+': {argument.lstrip('+')}"
                )
            options = loader.get_group_options(group)
            if not options:
                parent, _, name = group.rpartition("/")
                groups = loader.list_groups(parent)
                close = difflib.get_close_matches(name, groups, n=1)
                hint = f"did you mean {parent}/{close[0]}? " if close else ""
                raise ConfigError(
                    f"bad configuration override {argument!r}: there is no config group {group}; "
                    f"{hint}groups in {parent}: {', '.join(sorted(groups))}"
                )
            if override.is_delete() or override.value_type not in (
                ValueType.ELEMENT,
                ValueType.SIMPLE_CHOICE_SWEEP,
                ValueType.CHOICE_SWEEP,
            ):
                continue  # removing the group, or a glob/range sweep: Hydra's to judge
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            for value in values:
                if value is not None and str(value) not in options:  # null deselects the group
                    close = difflib.get_close_matches(str(value), options, n=1)
                    hint = f"did you mean {group}={close[0]}? " if close else ""
                    raise ConfigError(
                        f"bad configuration override {argument!r}: {group} has no option {value!r}; "
                        f"{hint}available: {', '.join(sorted(options))}"
                    )


def _hydra_selected_groups() -> set[str]:
    """The ``hydra/*`` groups Hydra's own defaults list always selects (``hydra/launcher``)."""
    from hydra.conf import HydraConf

    return {f"hydra/{group}" for entry in HydraConf().defaults for group, choice in entry.items() if choice}


def configured_store_root(project_dir: Path) -> Path:
    """``artifacts.root`` as ``config.yaml`` sets it (``TRAINFLOW_HOME``, else ``.trainflow``),
    read without composing the whole config."""
    root = OmegaConf.load(project_dir / "config.yaml").artifacts.root
    return (project_dir / os.path.expanduser(str(root))).resolve()


def split_overrides(hydra_options: str) -> list[str]:
    """Split an ``-P hydra_options="..."`` string the way a shell would (quotes kept together)."""
    try:
        return shlex.split(hydra_options)
    except ValueError as error:
        raise ConfigError(f"cannot parse hydra_options {hydra_options!r}: {error}; check the quotes") from None


def resolve_paths(cfg: DictConfig, project_dir: Path) -> DictConfig:
    """Make relative paths in the config absolute, relative to the project directory.

    Components run with their own folder as working directory, so every path they
    receive must already be absolute.
    """
    cfg = OmegaConf.create(section_dict(cfg))
    OmegaConf.set_struct(cfg, True)
    cfg.artifacts.root = str((project_dir / os.path.expanduser(cfg.artifacts.root)).resolve())
    if "://" not in cfg.data.uri:
        cfg.data.uri = str((project_dir / os.path.expanduser(cfg.data.uri)).resolve())
    if not is_repository_uri(cfg.main.components_repository):
        cfg.main.components_repository = str(
            (project_dir / os.path.expanduser(cfg.main.components_repository)).resolve()
        )
    return cfg


def validate(cfg: DictConfig, estimator_params: bool = True) -> None:
    """Checks the schema's types cannot express; raises :class:`ConfigError` naming the key.

    ``estimator_params=False`` leaves out the one check that imports scikit-learn (the
    estimator's parameters, see :func:`trainflow.ml.train.validate_estimator_config`).
    """
    check_known_keys(cfg)
    if cfg.main.env_manager not in ENV_MANAGERS:
        raise ConfigError(f"main.env_manager={cfg.main.env_manager!r} is not one of {', '.join(ENV_MANAGERS)}")
    if str(cfg.main.log_level).upper() not in LEVELS:
        raise ConfigError(f"main.log_level={cfg.main.log_level!r} is not one of {', '.join(LEVELS)}")
    if cfg.artifacts.backend not in BACKENDS:
        raise ConfigError(f"artifacts.backend={cfg.artifacts.backend!r} is not one of {', '.join(BACKENDS)}")
    if cfg.data.max_bytes <= 0:
        raise ConfigError(f"data.max_bytes={cfg.data.max_bytes} must be a positive number of bytes, e.g. 2147483648")
    for key, value in cfg.data.limits.items():
        if value <= 0:
            raise ConfigError(f"data.limits.{key}={value} must be a positive number; the default is in config.yaml")
    for key in ("test_size", "val_size"):
        value = cfg.split[key]
        if not 0.0 < value < 1.0:
            raise ConfigError(f"split.{key}={value} must be a fraction strictly between 0 and 1, e.g. 0.2")
    if not cfg.data.target:
        raise ConfigError("data.target is empty: name the column to predict, e.g. data.target=species")
    if cfg.data.sha256 is not None and (len(cfg.data.sha256) != 64 or not _is_hex(cfg.data.sha256)):
        raise ConfigError(f"data.sha256={cfg.data.sha256!r} is not a 64-character hex sha256 digest")
    from trainflow.ml.train import validate_model_config

    try:
        validate_project(cfg.project)
    except TrainflowError as error:
        raise ConfigError(f"project: {error}") from None

    validate_model_config(cfg.model, cfg.data.target, estimator_params=estimator_params)
    validate_alias(cfg.promote.alias)
    parse_ref(cfg.test.model)
    parse_ref(cfg.promote.model)
    from trainflow.datacheck.checks import validate_data_check_config

    validate_data_check_config(section_dict(cfg.data_check))
    from trainflow.promotion.gate import validate_promote  # 10 ms that trainflow.cli.help would pay at import

    validate_promote(cfg.promote)
    parse_ref(cfg.batch_predict.model)
    from trainflow.ml.evaluate import check_direction

    check_direction(cfg.sweep.metric, cfg.sweep.higher_is_better, "sweep")
    if cfg.sweep.n_jobs < 1:
        raise ConfigError(
            f"sweep.n_jobs={cfg.sweep.n_jobs} must be at least 1 (trials at once with hydra/launcher=joblib)"
        )


def sets_estimator_params(overrides: Sequence[str]) -> bool:
    """Whether an override sets an estimator's parameters (``model.random_forest.n_estimators=0``).

    Checking them needs scikit-learn: a second of imports, and about 70 MiB the pipeline's
    early steps would then carry, worth it up front only when the user changed them.
    """
    sections = {name for name, kind in typing.get_type_hints(ModelConfig).items() if typing.get_origin(kind) is dict}
    keys = (override.lstrip("+~").partition("=")[0].split(".") for override in overrides)
    return any(len(key) >= 2 and key[0] == "model" and key[1] in sections for key in keys)


def check_known_keys(cfg: DictConfig) -> None:
    """Fail on a key the schema does not have, e.g. ``+main.step=test_model`` or
    ``+split.tst_size=0.3``: Hydra's ``+`` adds keys past struct mode (force_add), and
    nothing reads them, so the run would silently ignore what the user meant.

    Checked against the dataclasses, not OmegaConf's metadata, which :func:`resolve_paths`
    drops. Fields typed as a mapping or ``Any`` are open on purpose (``model.<estimator>``
    parameters, ``promote.thresholds``, ``data_check.expectations.columns``): their keys
    are checked where they are used, if at all.
    """
    _check_known_keys(section_dict(cfg, resolve=False), TrainflowConfig, "")


def _check_known_keys(section: Mapping[str, Any], schema: Any, prefix: str) -> None:
    # get_type_hints, not Field.type: with `from __future__ import annotations` the latter is a string.
    hints = typing.get_type_hints(schema)
    names = [f.name for f in fields(schema)]
    for key, value in section.items():
        path = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            where = f"{prefix[:-1]} has {', '.join(names)}" if prefix else f"the sections are {', '.join(names)}"
            hint = f"did you mean {prefix}{close[0]}?" if close else where
            raise ConfigError(
                f"unknown key {path} ({hint}): a + override only adds keys trainflow does not read; "
                "use a key from config.yaml, without the +"
            )
        kind = _unwrap_optional(hints[key])
        if is_dataclass(kind) and isinstance(value, Mapping):
            _check_known_keys(value, kind, f"{path}.")


def _unwrap_optional(kind: Any) -> Any:
    """``Optional[X]`` -> ``X``; any other type as it is."""
    if typing.get_origin(kind) is Union:
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return kind


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def flatten(section: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.random_forest.n_estimators": 100, ...}`` for logging as MLflow params."""
    container = section_dict(section)
    flat: dict[str, Any] = {}
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
