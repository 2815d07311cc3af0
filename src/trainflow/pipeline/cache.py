"""Step caching: when an earlier run of a step can stand in for running it again.

A step's cache key is the sha256 of a canonical JSON document of everything that
decides what the step produces:

- ``code``: every file of ``components/<step>/`` and every ``trainflow`` /
  ``trainflow_inference`` module its ``run.py`` can import, found by a static walk of
  import statements (module level and inside functions) with :mod:`ast`; a dynamic
  import the walk cannot follow makes it take both packages whole;
- ``params``: the resolved values of the step's config sections (``StepSpec.config_sections``);
- ``inputs``: per input parameter, the artifact name and the content digest of the exact
  version the step will be given, plus the version itself for a step whose result is
  recorded on that version (the step's ``CachePolicy.annotates``) and the metadata values the step
  reads (``CachePolicy.reads_metadata``);
- ``sources``: per location outside the store (``CachePolicy.sources``): a local file's
  sha256, a declared sha256, or a URL's ETag/Last-Modified from one HEAD request;
- ``environment``: the env manager and the component's ``conda.yml`` (a code file); with
  ``local``, also the Python version and the installed versions of the packages that
  ``conda.yml`` pins, since that is the environment the step then runs in.

An earlier run is re-used only if it succeeded with the same key (only the runner's
successful runs are recorded), every output it logged still resolves and its blobs
still hash to their recorded digests, and every record it wrote on an input version is
still its own. Only the steps in :data:`CACHE_POLICIES` are keyed at all.
Nothing here touches MLflow: ``trainflow.pipeline.runner`` decides and logs.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import platform
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from trainflow.errors import ArtifactNotFound, DataError, TrainflowError
from trainflow.pipeline.steps import StepSpec, step_params
from trainflow.store.blobs import file_sha256
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import ArtifactVersion, CachedRun

# trainflow.ml.data (pandas, 0.3 s) and importlib.metadata (11 ms) are imported inside the functions that use them:
# `python main.py --help` (through trainflow.pipeline.runner) pays neither (docs/architecture.md#start-up).

# Bump when what goes into a key changes, so that records made the old way stop matching.
KEY_FORMAT = 2
LIBRARY_PACKAGES = ("trainflow", "trainflow_inference")
# Packages an exported model carries whole (model.export's code_paths): every file in them,
# imported or not, ends up in the step's output, so a step using one is keyed by all of it.
SHIPPED_WHOLE = ("trainflow_inference",)
# Calls that import a module named by their first argument.
_DYNAMIC_IMPORTS = {"import_module", "__import__", "run_module"}
_SKIPPED_PARTS = {"__pycache__"}


class Uncacheable(TrainflowError):
    """No key can be made for this run of a step; the message says why (it is then run)."""


# -- which steps may be re-used, and what their key sees ---------------------------------


@dataclass(frozen=True)
class ExternalSource:
    """A location outside the store that a step reads, named by config keys, so that the
    key can hold what is there without fetching it."""

    uri_key: str  # dotted key of the location: a path, file:// or http(s):// URL
    sha256_key: str | None = None  # dotted key of a declared sha256 that pins a remote source's content
    cache_remote_key: str | None = None  # dotted bool key: key a remote source by its ETag/Last-Modified


@dataclass(frozen=True)
class CachePolicy:
    """What a cacheable step's key sees beyond its code, its config sections, the content
    of its inputs and its environment."""

    # Metadata the step writes onto the version of one of its inputs, as (input param,
    # metadata key); the value is a mapping that names the writer's run_id. The result
    # then belongs to that exact version: the step is keyed by exact input versions, not
    # only their content, and an earlier run stands in only while its value is still there.
    annotates: tuple[tuple[str, str], ...] = ()
    # Metadata of an input version the step's result depends on, as (input param,
    # dotted metadata key, e.g. "data_check.passed"): its value goes into the key.
    reads_metadata: tuple[tuple[str, str], ...] = ()
    # Aliases the step resolves by itself, as (artifact name, dotted config key holding the
    # alias): the content digest of the version each names (or its absence) goes into the key.
    reads_aliases: tuple[tuple[str, str], ...] = ()
    # Config the step uses that goes into its key but not into its MLflow params (values
    # whose keys MLflow refuses as param names, such as column names).
    config_in_key_only: tuple[str, ...] = ()
    # Locations outside the store the step reads (their content goes into the key).
    sources: tuple[ExternalSource, ...] = ()


# The steps whose earlier successful run with the same key may stand in for running them,
# each with the reason. Opt-in: a step not listed always runs, because the key sees only
# what its policy names, and a step that reads anything else (another alias, a file, the
# clock) must not be re-used. batch_predict is not listed: it runs only when asked for,
# and it may score a path or URL whose content the key cannot see without reading it all.
CACHE_POLICIES: dict[str, CachePolicy] = {
    # The source's content is in the key (a local file's sha256, a declared data.sha256, or
    # with data.cache_remote=true the URL's ETag/Last-Modified); a URL with neither is
    # fetched every time, since nothing cheaper says it is unchanged.
    "fetch_data": CachePolicy(
        sources=(ExternalSource("data.uri", sha256_key="data.sha256", cache_remote_key="data.cache_remote"),),
    ),
    # Per exact raw_data version: its verdict is the `data_check` record on that version
    # (naming the run), which split_data reads. Drift depends on the version the reference
    # alias names, so that is keyed too; a first run that claims the alias changes its own
    # key, and is recorded under the key after it (Pipeline.record).
    "check_data": CachePolicy(
        annotates=(("raw_artifact", "data_check"),),
        reads_aliases=(("raw_data", "data_check.reference_alias"),),
        config_in_key_only=("data_check.expectations",),
    ),
    # A seeded split of the same table is the same split; check_data's verdict decides
    # whether split_data refuses the table.
    "split_data": CachePolicy(reads_metadata=(("raw_artifact", "data_check.passed"),)),
    # The same data, config, code and environment fit the same pipeline.
    "train_model": CachePolicy(),
    # Per exact version: its result is the `test` record on the model version, naming the
    # test set version, which promote_model compares by reference.
    "test_model": CachePolicy(annotates=(("model_artifact", "test"),)),
    # The decision is a function of the candidate (its content and its test record), the
    # champion of now (the production alias's version and content), the test set and the
    # gate's settings, all in the key. A run that promotes is recorded under the key after
    # it (the alias it moved in place), where a re-run decides the same: the candidate
    # already holds the alias. A re-used decision appends nothing to the promotion history
    # and says which run decided.
    "promote_model": CachePolicy(
        reads_aliases=(("model_export", "promote.alias"),),
        reads_metadata=(("model_artifact", "test"),),
    ),
}


def cache_policy(spec: StepSpec) -> CachePolicy | None:
    """The step's entry in :data:`CACHE_POLICIES`; None: it is never re-used."""
    return CACHE_POLICIES.get(spec.name)


def _policy(spec: StepSpec) -> CachePolicy:
    policy = cache_policy(spec)
    if policy is None:
        raise Uncacheable(f"{spec.name} is not in the cache's table (trainflow.pipeline.cache.CACHE_POLICIES)")
    return policy


@dataclass(frozen=True)
class CacheKey:
    digest: str
    parts: dict[str, Any]  # what the digest was made of, kept with the record to explain it


# -- code: the component's files and the library modules it can import ----------------


@functools.cache
def package_dirs() -> dict[str, Path]:
    """Where each library package's source is, as the component's interpreter imports it."""
    dirs = {}
    for package in LIBRARY_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise TrainflowError(f"cannot locate the {package} package to key the step cache: reinstall trainflow")
        dirs[package] = Path(spec.origin).resolve().parent
    return dirs


def component_packages(component_dir: Path) -> dict[str, Path] | None:
    """Where a component started as a process of its own imports the library from: its
    MLproject puts ``../../src`` first on PYTHONPATH, so that copy when it holds the
    packages; None (the installed library) when it does not. The pipeline's own process
    may import another copy (an installed one), which is what its in-process steps run."""
    src = component_dir.resolve().parent.parent / "src"
    found = {package: src / package for package in LIBRARY_PACKAGES if (src / package / "__init__.py").is_file()}
    return found if len(found) == len(LIBRARY_PACKAGES) else None


def module_file(name: str, packages: Mapping[str, Path]) -> Path | None:
    """The source file of library module ``name`` (``trainflow.store.local``), or None if it is not one."""
    top = name.partition(".")[0]
    return _module_file(name, packages[top]) if top in packages else None


@functools.lru_cache(maxsize=4096)
def _module_file(name: str, package_dir: Path) -> Path | None:
    # Remembered for the process: a module appearing or vanishing matters only once a file
    # imports it, and that file's own bytes are in the key.
    base = package_dir.joinpath(*name.split(".")[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class _ModuleImports:
    names: frozenset[str]  # every dotted name imported, or named by a string constant
    dynamic: bool  # an import_module/__import__ whose module the source does not spell out


@functools.lru_cache(maxsize=1024)
def _imports_of(source: bytes, package: str) -> _ModuleImports:
    """What a module's source imports, anywhere in it; ``package`` resolves relative imports.
    Memoised by the source itself (an edited file is parsed afresh): every step's key walks
    the same library modules, and parsing them is most of what computing a key costs."""
    names: set[str] = set()
    dynamic = False
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A module named in a string (an import_module argument kept in a table) counts too.
            names.add(node.value)
        elif isinstance(node, ast.Call):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in _DYNAMIC_IMPORTS and not (node.args and isinstance(node.args[0], ast.Constant)):
                dynamic = True
    return _ModuleImports(frozenset(names), dynamic)


class ImportScans:
    """What each library module imports, remembered across processes: a pure function of
    the module's source and its package, kept by the source's sha256 in a JSON file (the
    store's ``cache/import_scans.json``). A process that finds its modules there skips
    parsing them, most of what computing the step keys of an unchanged re-run costs
    (0.2 s); an edited module has another digest and is parsed afresh. Without a file
    (``path`` None) it remembers for the process only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.known: dict[str, list[Any]] = {}
        self.added = False
        if path is not None and path.is_file():
            try:
                self.known = json.loads(path.read_text())
            except (OSError, ValueError):
                self.known = {}  # unreadable: parsed again, and written whole

    def imports_of(self, source: bytes, package: str) -> _ModuleImports:
        key = f"{hashlib.sha256(source).hexdigest()} {package}"
        known = self.known.get(key)
        if known is not None:
            return _ModuleImports(frozenset(known[0]), bool(known[1]))
        found = _imports_of(source, package)
        self.known[key] = [sorted(found.names), found.dynamic]
        self.added = True
        return found

    def save(self) -> None:
        """Write what was added (atomically: concurrent pipelines each write a whole file)."""
        if not self.added or self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(self.known, sort_keys=True))
        os.replace(partial, self.path)
        self.added = False


def library_modules(
    entry: Path, packages: Mapping[str, Path] | None = None, scans: ImportScans | None = None
) -> list[Path] | None:
    """The library source files ``entry`` can import, directly or through each other,
    package ``__init__`` files included; None when a dynamic import hides what they are.
    """
    packages = packages or package_dirs()
    scans = scans or ImportScans()
    found: set[Path] = set()
    pending: list[tuple[Path, str]] = [(entry, "")]
    while pending:
        path, package = pending.pop()
        imports = scans.imports_of(path.read_bytes(), package)
        if imports.dynamic:
            return None
        for name in imports.names:
            parts = name.split(".")
            if parts[0] not in packages:
                continue
            # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c; a trailing part may be
            # an attribute (from a.b import Class), which has no file of its own.
            for depth in range(1, len(parts) + 1):
                module = ".".join(parts[:depth])
                source = module_file(module, packages)
                if source is not None and source not in found:
                    found.add(source)
                    pending.append((source, module if source.name == "__init__.py" else module.rpartition(".")[0]))
    return sorted(found)


@functools.cache
def library_as_loaded() -> dict[str, str]:
    """sha256 of every library file as this process first saw it (``package/relative path``).

    Called before the library runs (``main_argv``), it stands for the code a step run in
    this process executes: an edit made later is on disk, in the next step's key, but not
    in the modules this process imported.
    """
    return {
        f"{package}/{path.relative_to(directory).as_posix()}": file_sha256(path)
        for package, directory in package_dirs().items()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not _skipped(path)
    }


def changed_since_loaded(code: Mapping[str, str]) -> list[str]:
    """The library files of a key's ``code`` part (name -> sha256) whose bytes are not the
    ones :func:`library_as_loaded` saw (edited or added since): a step run in this process
    did not run them as the key describes. Compared with the key's own digests, so the
    files are not hashed again."""
    loaded = library_as_loaded()
    return sorted(
        name
        for name, digest in code.items()
        if name.partition("/")[0] in LIBRARY_PACKAGES and loaded.get(name) != digest
    )


def whole_packages(packages: Mapping[str, Path]) -> list[Path]:
    return sorted(p for directory in packages.values() for p in directory.rglob("*.py") if not _skipped(p))


def _skipped(path: Path) -> bool:
    return bool(_SKIPPED_PARTS & set(path.parts)) or path.suffix in (".pyc", ".pyo")


def code_digests(
    component_dir: Path, packages: Mapping[str, Path] | None = None, scans: ImportScans | None = None
) -> dict[str, str]:
    """sha256 of every file the step's code consists of, by a stable name:
    ``component/<relative path>`` and ``<package>/<relative path>``.
    """
    packages = packages or package_dirs()
    digests = {
        f"component/{path.relative_to(component_dir).as_posix()}": file_sha256(path)
        for path in sorted(component_dir.rglob("*"))
        if path.is_file() and not _skipped(path.relative_to(component_dir))
    }
    modules = library_modules(component_dir / "run.py", packages, scans)
    files = set(modules if modules is not None else whole_packages(packages))
    for package in SHIPPED_WHOLE:
        directory = packages.get(package)
        if directory is not None and any(path.is_relative_to(directory) for path in files):
            files.update(p for p in directory.rglob("*") if p.is_file() and not _skipped(p))
    for path in sorted(files):
        package, directory = next((p, d) for p, d in packages.items() if path.is_relative_to(d))
        digests[f"{package}/{path.relative_to(directory).as_posix()}"] = file_sha256(path)
    return digests


# -- environment ------------------------------------------------------------------------


def environment_spec(component_dir: Path, env_manager: str) -> dict[str, Any]:
    """The environment the step runs in, beyond its ``conda.yml`` (which is a code file).

    With ``local`` the component runs in this interpreter's environment whatever
    ``conda.yml`` says, so the installed versions of the packages it pins are part of it.
    """
    spec: dict[str, Any] = {"env_manager": env_manager}
    if env_manager == "local":
        spec["python"] = platform.python_version()
        spec["packages"] = {name: _installed_version(name) for name in _pinned_packages(component_dir / "conda.yml")}
    return spec


def _pinned_packages(conda_file: Path) -> list[str]:
    if not conda_file.is_file():
        return []
    document = yaml.safe_load(conda_file.read_text()) or {}
    pins: list[str] = []
    for dependency in document.get("dependencies") or []:
        if isinstance(dependency, dict):
            pins += [str(p) for p in dependency.get("pip") or []]
    return sorted({pin.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip() for pin in pins})


@functools.cache
def _installed_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# -- params, inputs and sources ---------------------------------------------------------


def input_state(
    spec: StepSpec, policy: CachePolicy, versions: Mapping[str, ArtifactVersion]
) -> dict[str, dict[str, Any]]:
    """Per input parameter: the artifact and its content digest; the exact version too
    when the step records its result on its inputs (content-equal versions differ then);
    the metadata values the step reads."""
    by_version = bool(policy.annotates)
    state: dict[str, dict[str, Any]] = {}
    for step_input in spec.inputs:
        version = versions[step_input.param]
        state[step_input.param] = {
            "artifact": version.name,
            "digest": version.digest,
            **({"version": version.ref} if by_version else {}),
        }
    for param, key in policy.reads_metadata:
        state[param].setdefault("metadata", {})[key] = metadata_value(versions[param].metadata, key)
    return state


def alias_state(store: LocalArtifactStore, cfg: DictConfig, spec: StepSpec) -> dict[str, str | None]:
    """For each alias the step resolves by itself (its policy's ``reads_aliases``): the exact
    version it names now and that version's content digest (``"raw_data:v1 <digest>"``),
    or None when it names none. The version too, not only the content: the step's report
    says which version it compared with."""
    state: dict[str, str | None] = {}
    for name, config_key in _policy(spec).reads_aliases:
        ref = f"{name}:{OmegaConf.select(cfg, config_key, throw_on_missing=True)}"
        try:
            version = store.get(ref)
        except ArtifactNotFound:
            state[ref] = None
        else:
            state[ref] = f"{version.ref} {version.digest}"
    return state


def metadata_value(metadata: Mapping[str, Any], dotted_key: str) -> Any:
    """``metadata["a"]["b"]`` for ``"a.b"``; None where any level is missing."""
    value: Any = metadata
    for part in dotted_key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def source_state(source: ExternalSource, cfg: DictConfig) -> dict[str, Any]:
    """What says the content at ``source`` is unchanged; :class:`Uncacheable` if nothing cheap does."""
    uri = str(OmegaConf.select(cfg, source.uri_key, throw_on_missing=True))
    declared = OmegaConf.select(cfg, source.sha256_key) if source.sha256_key else None
    parsed = urllib.parse.urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parsed.path) if scheme == "file" else uri).expanduser()
        if not path.is_file():
            raise Uncacheable(f"{source.uri_key} is not a file ({path})")
        return {"uri": uri, "sha256": file_sha256(path)}
    if declared:
        # The step refuses any other content, so the declared digest pins what it produces.
        return {"uri": uri, "sha256": str(declared).lower()}
    if source.cache_remote_key and OmegaConf.select(cfg, source.cache_remote_key):
        from trainflow.ml.data import remote_validators

        try:
            validators = remote_validators(uri)
        except DataError as error:
            raise Uncacheable(str(error)) from None
        if not validators:
            raise Uncacheable(f"{uri} sends no ETag or Last-Modified to tell whether it changed")
        return {"uri": uri, "validators": validators}
    pins = [f"{key} set" for key in (source.sha256_key,) if key] + [
        f"{key}=true" for key in (source.cache_remote_key,) if key
    ]
    raise Uncacheable(f"{uri} is fetched on every run{' without ' + ' or '.join(pins) if pins else ''}")


def step_key(
    spec: StepSpec,
    cfg: DictConfig,
    versions: Mapping[str, ArtifactVersion],
    component_dir: Path,
    env_manager: str,
    packages: Mapping[str, Path] | None = None,
    aliases: Mapping[str, str | None] | None = None,
    scans: ImportScans | None = None,
    policy: CachePolicy | None = None,
) -> CacheKey:
    """The cache key of running ``spec`` with this config on these exact input versions;
    ``aliases`` maps each ``name:alias`` of the policy's ``reads_aliases`` to the version it
    names and its content digest, or None (see :func:`alias_state`). ``policy``: the step's
    entry in :data:`CACHE_POLICIES` unless given."""
    policy = policy or _policy(spec)
    parts = {
        "format": KEY_FORMAT,
        "step": spec.name,
        "code": code_digests(component_dir, packages, scans),
        "params": step_params(cfg, spec),
        "inputs": input_state(spec, policy, versions),
        "sources": [source_state(source, cfg) for source in policy.sources],
        "environment": environment_spec(component_dir, env_manager),
    }
    if policy.config_in_key_only:
        parts["config"] = {
            key: OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node
            for key in policy.config_in_key_only
            for node in [OmegaConf.select(cfg, key, throw_on_missing=True)]
        }
    if policy.reads_aliases:
        parts["aliases"] = dict(aliases or {})
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return CacheKey(hashlib.sha256(canonical.encode()).hexdigest(), json.loads(canonical))


# -- finding a run to re-use ----------------------------------------------------------


def reusable_run(
    store: LocalArtifactStore, spec: StepSpec, key: CacheKey, versions: Mapping[str, ArtifactVersion]
) -> tuple[CachedRun | None, str]:
    """The newest recorded run of ``spec`` with ``key`` whose results are all still in
    place, or None and why not (for the step's one line)."""
    records = store.cached_runs(spec.name, key.digest)
    if not records:
        return None, "no earlier run with this key"
    problems = []
    for record in records:
        problem = _still_in_place(store, spec, record, versions)
        if problem is None:
            return record, ""
        problems.append(f"run {record.run_id}: {problem}")
    return None, "; ".join(problems[:2])


def _still_in_place(
    store: LocalArtifactStore, spec: StepSpec, record: CachedRun, versions: Mapping[str, ArtifactVersion]
) -> str | None:
    for ref in record.outputs.values():
        try:
            version = store.get(ref)
            problem = store.verify_version(ref)
        except ArtifactNotFound:
            return f"its output {ref} is gone"
        if problem:
            return problem
        # Version numbers are reused when versions are deleted: the number must still be this run's.
        if version.run is None or version.run.run_id != record.run_id:
            return f"its output {ref} is now another run's version"
    return annotations_problem(store, spec, versions, record.run_id)


def annotations_problem(
    store: LocalArtifactStore, spec: StepSpec, versions: Mapping[str, ArtifactVersion], run_id: str
) -> str | None:
    """Why the records ``spec`` writes on its input versions are not ``run_id``'s now, or None."""
    for param, metadata_key in _policy(spec).annotates:
        ref = versions[param].ref
        current = store.get(ref).metadata.get(metadata_key)
        if not isinstance(current, Mapping) or current.get("run_id") != run_id:
            return f"{ref}'s {metadata_key!r} record is not run {run_id}'s"
    return None
