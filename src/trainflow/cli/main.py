"""``trainflow``: inspect the artifact store the way the W&B UI would.

    trainflow init                          create the store and the MLflow experiment
    trainflow artifacts list [NAME]         artifacts, or the versions of one
    trainflow artifacts show NAME:REF       one version: metadata, files, producer
    trainflow artifacts get NAME:REF DIR    copy a version's files into DIR
    trainflow artifacts alias NAME:REF ALIAS
    trainflow artifacts lineage NAME:REF    the chain back to the raw data
    trainflow artifacts verify [--repair]   check every blob and the index; remove garbage
    trainflow data-schema infer NAME:REF|FILE [--target T] [--out FILE]
                                            a starting data_check.expectations section
    trainflow promotions [--name NAME]      every promotion decision and rollback
    trainflow rollback [--alias prod]       move prod back to the previous champion
    trainflow sweeps list                   the sweeps whose trials logged models
    trainflow sweeps show SWEEP_ID          their models, best first
    trainflow sweeps best SWEEP_ID --metric M
                                            alias the best trial's model as model_export:candidate
    trainflow completion bash|zsh|tcsh|fish|powershell
                                            print a tab-completion script for the shell

The store is ``--root``, else ``$TRAINFLOW_HOME``, else ``.trainflow`` in the current
directory, the same default ``config.yaml`` uses when run from the project folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trainflow import __version__
from trainflow.cli.completion import SHELLS, completion_script
from trainflow.errors import CorruptArtifact, DataError, TrainflowError, exit_on_user_error, is_disk_full
from trainflow.logs import configure as configure_logs
from trainflow.logs import level_from_flags, prefixed
from trainflow.promotion.gate import format_table
from trainflow.promotion.registry import rollback
from trainflow.store.local import LocalArtifactStore, lineage
from trainflow.store.records import ArtifactVersion
from trainflow.store.refs import CANDIDATE_ALIAS, gated_alias_message
from trainflow.store.wandb_backend import WandbArtifactStore, choose_backend, open_api

# The command's own messages (what it did); results (lists, tables, JSON) are printed.
say = prefixed(__name__, "")

# mlflow (trainflow.tracking), Hydra (trainflow.pipeline.sweeps), pandas (trainflow.ml, trainflow.datacheck), wandb
# and yaml (8 ms) are imported inside the commands that use them: about 1.4 s that the other `trainflow` commands
# do not pay (docs/architecture.md#start-up).

# config.yaml's promote.alias and the type train_model logs its export as.
PRODUCTION_ALIAS = "prod"
MODEL_EXPORT_TYPE = "model_export"


def default_root() -> Path:
    return Path(os.environ.get("TRAINFLOW_HOME") or ".trainflow")


def _describe(version: ArtifactVersion) -> str:
    producer = f"{version.run.step}, run {version.run.run_id}" if version.run else "no run"
    return f"{version.ref} [{version.type}] ({producer}) aliases: {', '.join(version.aliases) or '-'}"


def cmd_init(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    from trainflow.tracking import create_store_database, experiment_id, is_store_database, use_tracking

    uri = use_tracking(store.root)
    if is_store_database(uri, store.root):
        create_store_database(store.root, args.experiment_name)
    experiment = experiment_id(args.experiment_name, store.root)
    say.info(f"artifact store: {store.root}")
    say.info(f"MLflow tracking: {uri} (experiment {args.experiment_name!r}, id {experiment})")


def print_json(value: Any) -> None:
    """``--json`` output: one JSON document on standard output, for scripts."""
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def cmd_list(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    if args.name:
        versions = store.list_versions(args.name)
        if not versions:
            store.get(args.name)  # raises ArtifactNotFound listing the names that exist
        if args.json:
            print_json([version.as_record() for version in versions])
            return
        for version in versions:
            print(f"{_describe(version)}  {version.size:,} bytes  {version.created_at}")
        return
    if not isinstance(store, LocalArtifactStore):
        raise TrainflowError("listing every artifact needs the local store; on W&B, give a NAME or use the W&B UI")
    names = store.list_names()
    if args.json:
        print_json([{"name": name, "type": type_, "versions": count} for name, type_, count in names])
        return
    if not names:
        print(f"no artifacts in {store.root}")
    for name, type_, count in names:
        print(f"{name}  [{type_}]  {count} version(s)")


def cmd_show(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    version = store.get(args.ref)
    if args.json:
        print_json(version.as_record())
        return
    print(_describe(version))
    print(f"description: {version.description}")
    print(f"created: {version.created_at}  size: {version.size:,} bytes  digest: {version.digest}")
    if version.run:
        print(f"git commit: {version.run.git_commit or '-'}")
    print("metadata: " + json.dumps(version.metadata, indent=2, sort_keys=True))
    print("files:")
    for stored in version.files:
        print(f"  {stored.path}  {stored.size:,} bytes  sha256 {stored.sha256}")


@contextlib.contextmanager
def writing_to(destination: Path, fix: str) -> Iterator[None]:
    """Report an OSError while writing the user's ``destination`` as one line naming it and ``fix``.

    Where the user asked us to write is their input, not our bug. A full disk keeps its own
    message (exit_on_user_error's).
    """
    try:
        yield
    except OSError as error:
        if is_disk_full(error):
            raise
        raise TrainflowError(f"cannot write {error.filename or destination}: {_why(error)}; {fix}") from None


def _why(error: OSError) -> str:
    """An OSError's reason; a failed copytree (shutil.Error) holds (source, destination, why) per file instead."""
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list) and error.args[0]:
        return str(error.args[0][0][2])
    return error.strerror or str(error)


def cmd_get(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    target = Path(args.dir)
    fix = "choose a new folder (it is created) or an existing folder you can write to"
    if target.exists() and not target.is_dir():
        raise TrainflowError(f"{target} is a file, not a folder; {fix}")
    source = store.use_artifact(args.ref)
    # copyfile, not copy2: the checkout is read-only (its files are the store's blobs), the copy is the user's
    with writing_to(target, fix):
        if source.is_dir():
            shutil.copytree(source, target, copy_function=shutil.copyfile, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / source.name)
    say.info(f"{store.get(args.ref).ref} -> {target}")


def cmd_alias(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    # The store refuses an alias the gate has decided about; a model's production alias is
    # the gate's even before its first promotion, so that no first champion skips the gate.
    target = store.get(args.ref)
    if args.alias == PRODUCTION_ALIAS and target.type == MODEL_EXPORT_TYPE:
        raise TrainflowError(gated_alias_message(target.name, args.alias, target.ref))
    version = store.set_alias(args.ref, args.alias)
    say.info(f"{version.name}:{args.alias} -> {version.ref}")


def cmd_verify(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    """Every blob against its digest, the index against itself; garbage reported or removed."""
    if not isinstance(store, LocalArtifactStore):
        raise TrainflowError(
            "artifacts verify checks the local store; W&B verifies its own storage: use --backend local"
        )
    report = store.verify(repair=args.repair, grace_seconds=args.grace_seconds)
    say.info(
        f"checked {report.versions} version(s), {report.blobs} blob(s), {report.bytes_checked:,} bytes in {store.root}"
    )
    for problem in report.problems:
        say.error(f"  PROBLEM {problem}")
    garbage = len(report.orphans) + len(report.stale_tmp)
    if args.repair:
        say.info(f"  removed {len(report.removed)} orphaned blob(s) and stale temporary file(s)")
    elif garbage:
        say.warning(
            f"  {len(report.orphans)} orphaned blob(s), {len(report.stale_tmp)} stale temporary file(s): "
            "remove them with `trainflow artifacts verify --repair`"
        )
    if report.recent_orphans:
        say.info(
            f"  {len(report.recent_orphans)} unreferenced blob(s) younger than {args.grace_seconds:g} s kept "
            "(a step may be writing them)"
        )
    if not report.ok:
        raise CorruptArtifact(
            f"{len(report.problems)} problem(s) in the store at {store.root} (listed above): the versions named "
            "cannot be read; re-run the steps that produced them"
        )
    say.info("store OK")


def cmd_lineage(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    for depth, version in lineage(store, args.ref):
        line = "  " * depth + ("└─ " if depth else "") + _describe(version)
        if version.run and version.run.git_commit:
            line += f" commit {version.run.git_commit[:12]}"
        if "source" in version.metadata:
            line += f" source {version.metadata['source']} sha256 {version.metadata.get('sha256')}"
        print(line)


def cmd_sweeps_list(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    from trainflow.pipeline.sweeps import list_sweeps

    found = list_sweeps(store)
    if not found:
        print(f"no sweep has logged a model in {store.root}")
    for sweep_id, models, first in found:
        print(f"{sweep_id}  {models} model(s)  {first[:19].replace('T', ' ')}")


def cmd_sweeps_show(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    from trainflow.ml.evaluate import check_direction
    from trainflow.pipeline.sweeps import format_sweep

    check_direction(args.metric, not args.lower_is_better, None)
    print(format_sweep(store, args.sweep_id, args.metric, not args.lower_is_better))


def cmd_sweeps_best(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    from trainflow.ml.evaluate import check_direction
    from trainflow.pipeline.sweeps import MODEL_ARTIFACT, select_best

    if args.alias == PRODUCTION_ALIAS:
        raise TrainflowError(
            f"sweeps best does not move {MODEL_ARTIFACT}:{PRODUCTION_ALIAS}, only the promotion gate does: "
            f"alias the best trial as {CANDIDATE_ALIAS} (drop --alias), then promote it with "
            f'`mlflow run . -P steps=promote_model -P hydra_options="promote.model={MODEL_ARTIFACT}:{CANDIDATE_ALIAS}"`'
        )
    check_direction(args.metric, not args.lower_is_better, None)
    best, value = select_best(store, args.sweep_id, args.metric, not args.lower_is_better, args.alias)
    trial, metric = best.metadata["sweep"].get("trial"), args.metric.removeprefix("val_")
    if args.json:
        print_json(
            {
                "alias": f"model_export:{args.alias}",
                "version": best.ref,
                "sweep": args.sweep_id,
                "trial": trial,
                "metric": f"val_{metric}",
                "value": value,
            }
        )
        return
    print(
        f"model_export:{args.alias} -> {best.ref} (trial {trial} of sweep {args.sweep_id}, val_{metric} = {value:.4f})"
    )


# Suffixes that make an argument a file name even without a folder in it (an artifact name
# may end in .parquet too, so such a name is still looked up in the store first).
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
_NO_SUCH_FILE_FIX = "check the path, or give a stored version such as raw_data:latest"


def _schema_source(root: Path, argument: str) -> tuple[Path, str]:
    """The file ``data-schema infer`` reads for ``argument`` (a file or a stored version), and how to name it."""
    from trainflow.ml.inference import is_location

    path = Path(argument).expanduser()
    if path.is_file():
        return path, str(path.resolve())
    if path.is_dir():
        raise DataError(f"{argument} is a folder, not a data file; give a CSV or Parquet file, or a stored version")
    if is_location(argument):  # artifact names hold no '/'
        raise DataError(f"no such file {argument}; {_NO_SUCH_FILE_FIX}")
    if not (root / "index.db").is_file():
        raise DataError(
            f"no such file {argument}, and no artifact store at {root.resolve()} to look it up in as a stored version; "
            "check the path, or set TRAINFLOW_HOME or --root"
        )
    store = LocalArtifactStore(root)
    try:
        version = store.get(argument)
    except TrainflowError as error:  # an unknown or invalid reference
        if argument.lower().endswith(DATA_SUFFIXES):
            raise DataError(f"no such file {argument}; {_NO_SUCH_FILE_FIX}") from None
        raise DataError(f"no such file {argument}, and it is not a stored version either: {error}") from None
    return store.use_artifact(version.ref), version.ref


def cmd_data_schema_infer(root: Path, args: argparse.Namespace) -> None:
    """Write ``data_check.expectations`` inferred from a stored version or a CSV/Parquet file."""
    import yaml

    from trainflow.datacheck.expectations import infer_expectations
    from trainflow.ml.data import read_table

    path, source = _schema_source(root, args.source)
    frame = read_table(path, setting="the source argument")
    if args.target is not None and args.target not in frame.columns:
        raise TrainflowError(
            f"--target {args.target!r} is not a column of {source}: it has {', '.join(map(str, frame.columns))}"
        )
    expectations = infer_expectations(frame, target=args.target, max_categories=args.max_categories, margin=args.margin)
    text = (
        f"# data_check.expectations inferred by `trainflow data-schema infer` from {source}\n"
        f"# ({len(frame):,} rows). It describes this table: review the categories, ranges and row\n"
        "# count, then put the section in config.yaml.\n"
        + yaml.safe_dump({"data_check": {"expectations": expectations}}, sort_keys=False, allow_unicode=True)
    )
    if args.out is None:
        print(text, end="")
        return
    with writing_to(Path(args.out), "choose another --out file, in a folder that exists and you can write to"):
        Path(args.out).write_text(text)
    say.info(f"wrote data_check.expectations for {len(frame.columns)} columns of {source} to {args.out}")


def _short(ref: str | None) -> str:
    return ref.rsplit(":", 1)[1] if ref else "-"


def cmd_promotions(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    entries = store.promotions(args.name, args.alias)
    if not entries:
        about = f"{args.name}:{args.alias}" if args.alias else args.name
        print(f"no promotion decisions for {about} in {store.root}")
        return
    rows = [
        ("#", "at (UTC)", "action", "outcome", "candidate", "alias: before -> after", "metric", "forced", "who", "run")
    ]
    metric = "roc_auc_ovo"
    for entry in entries:
        details = entry.details
        metric = (details.get("policy") or {}).get("metric", metric)
        value = (details.get("metrics") or {}).get(metric)
        rows.append(
            (
                str(entry.id),
                entry.at[:19].replace("T", " "),
                entry.action,
                entry.outcome,
                entry.candidate or "-",
                f"{entry.alias}: {_short(entry.before)} -> {_short(entry.after)}",
                f"{metric}={value:.4f}" if isinstance(value, (int, float)) else "-",
                "yes" if details.get("forced") else "no",
                entry.actor,
                (entry.run_id or "-")[:12],
            )
        )
    if not args.criteria:
        print(format_table(rows, indent=""))
        return
    for header, entry in zip(rows[1:], entries):
        print(format_table([rows[0], header], indent=""))
        criteria = entry.details.get("criteria") or []
        if criteria:
            table = [("criterion", "value", "bound", "verdict")] + [
                (c.get("criterion", ""), c.get("value", ""), c.get("bound", ""), _verdict(c)) for c in criteria
            ]
            print(format_table(table, indent="    "))
        registry = entry.details.get("registry")
        if registry:
            print(f"    registry: alias {entry.alias!r} -> models:/{registry['name']}/{registry['version']}")
        if entry.details.get("reason"):  # a refusal before any criterion could be tabled
            print(f"    reason: {entry.details['reason']}")
        print()


def _verdict(criterion: dict) -> str:
    if "verdict" in criterion:
        return str(criterion["verdict"])
    if criterion.get("passed") is None:
        return "-"
    if criterion.get("forced"):
        return "FAIL (forced)"
    return "pass" if criterion["passed"] else "FAIL"


def cmd_completion(args: argparse.Namespace) -> None:
    print(completion_script(build_parser(), args.shell).rstrip("\n"))


def cmd_rollback(store: LocalArtifactStore, args: argparse.Namespace) -> None:
    entry, registered, table = rollback(
        store, args.name, args.alias, registered_name=args.registered_model_name, experiment_name=args.experiment_name
    )
    say.info(f"rollback of {args.name}:{args.alias}:\n{table}")
    say.info(
        f"{args.name}:{args.alias}: {entry.before} -> {entry.after} (rolled back; recorded as decision #{entry.id})"
    )
    if registered is None:
        say.info("registry: none recorded for the current champion; moved the store alias only")
    else:
        say.info(f"registry: models:/{registered.name}@{args.alias} -> version {registered.version}")


def _at_least_zero(kind: type) -> Callable[[str], float | int]:
    """An argparse type for a finite number >= 0 (a count, a fraction, seconds)."""

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
        return value

    return parse


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options every command takes: before the subcommand (``trainflow --root R artifacts
    list``) or after it (``trainflow artifacts list --root R``). Their default is
    ``argparse.SUPPRESS``, so that one given in one place is not reset by the other's
    default; :func:`global_options` fills in the real ones."""
    default = argparse.SUPPRESS
    parser.add_argument(
        "--root", type=Path, default=default, help="store root (default: $TRAINFLOW_HOME or ./.trainflow)"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "wandb", "auto"),
        default=default,
        help="artifacts from the local store or a W&B project; auto (the default, as the pipeline's "
        "artifacts.backend): W&B when its credentials are configured and WANDB_MODE is not offline",
    )
    parser.add_argument(
        "--project",
        default=default,
        help="the project (one table and target, e.g. penguins-species): in the local store, default the only "
        "one it holds, else name it; on W&B, the W&B project (default $WANDB_PROJECT)",
    )
    parser.add_argument("--entity", default=default, help="W&B entity (default $WANDB_ENTITY)")
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="say more (debug messages); results print always"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="say only errors; results (lists, JSON) print always"
    )


def global_options(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the defaults of the global options given nowhere."""
    defaults = {
        "root": None,
        "backend": "auto",
        "project": None,
        "entity": os.environ.get("WANDB_ENTITY"),
        "verbose": 0,
        "quiet": 0,
    }
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def _leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every subcommand's parser that takes no further subcommand."""
    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not children:
        yield parser
    for action in children:
        for child in action.choices.values():
            yield from _leaf_parsers(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create the store and the MLflow experiment")
    init.add_argument("--experiment-name", default="trainflow", help="the MLflow experiment (default: trainflow)")
    init.set_defaults(handler=cmd_init)

    artifacts = commands.add_parser("artifacts", help="list, show, get, alias and trace artifacts")
    verbs = artifacts.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="artifacts, or the versions of NAME")
    json_help = "print one JSON document instead of text, for scripts"
    listing.add_argument("name", nargs="?", help="an artifact name (raw_data, model_export, ...); none: every name")
    listing.add_argument("--json", action="store_true", help=json_help)
    listing.set_defaults(handler=cmd_list)
    show = verbs.add_parser("show", help="one version in full")
    show.add_argument("ref", help="a version: name:vN or name:alias (model_export:prod)")
    show.add_argument("--json", action="store_true", help=json_help)
    show.set_defaults(handler=cmd_show)
    get = verbs.add_parser("get", help="copy a version's files into DIR")
    get.add_argument("ref", help="a version: name:vN or name:alias")
    get.add_argument("dir", help="the folder to copy the files into (made if absent)")
    get.set_defaults(handler=cmd_get)
    alias = verbs.add_parser("alias", help="point ALIAS at a version")
    alias.add_argument("ref", help="a version: name:vN or name:alias")
    alias.add_argument(
        "alias", help="the alias to point at it (one the promotion gate moves, such as prod, is refused)"
    )
    alias.set_defaults(handler=cmd_alias)
    verify = verbs.add_parser("verify", help="check every blob's digest and the index; find orphaned blobs")
    verify.add_argument("--repair", action="store_true", help="remove orphaned blobs and stale temporary files")
    verify.add_argument(
        "--grace-seconds",
        type=_at_least_zero(float),
        default=3600.0,
        help="unreferenced blobs younger than this may belong to a running step: never removed (default 3600)",
    )
    verify.set_defaults(handler=cmd_verify)
    trace = verbs.add_parser("lineage", help="the chain of versions behind REF")
    trace.add_argument("ref", help="a version: name:vN or name:alias")
    trace.set_defaults(handler=cmd_lineage)

    data_schema = commands.add_parser("data-schema", help="expectations for the data_check step")
    schema_verbs = data_schema.add_subparsers(dest="verb", required=True)
    infer = schema_verbs.add_parser(
        "infer", help="write a data_check.expectations section inferred from a dataset (NAME:REF or a file)"
    )
    infer.add_argument("source", help="a stored version (raw_data:latest, raw_data:v3) or a CSV/Parquet file")
    infer.add_argument("--target", default=None, help="the target column: its values become the expected classes")
    infer.add_argument("--out", default=None, help="write to this YAML file instead of standard output")
    infer.add_argument(
        "--max-categories",
        type=_at_least_zero(int),
        default=20,
        help="string columns with at most this many distinct values get allowed values (default 20)",
    )
    infer.add_argument(
        "--margin",
        type=_at_least_zero(float),
        default=0.1,
        help="widen numeric ranges by this fraction of the observed range (default 0.1)",
    )
    infer.set_defaults(handler=cmd_data_schema_infer)
    history = commands.add_parser("promotions", help="the promotion history: every gate decision and rollback")
    history.add_argument("--name", default="model_export", help="artifact name (default: model_export)")
    history.add_argument("--alias", default=None, help="only decisions about this alias")
    history.add_argument("-c", "--criteria", action="store_true", help="also print each decision's criteria")
    history.set_defaults(handler=cmd_promotions)

    back = commands.add_parser(
        "rollback", help="move the production alias back to the previous champion, in the store and the registry"
    )
    back.add_argument("--name", default="model_export", help="artifact name (default: model_export)")
    back.add_argument("--alias", default=PRODUCTION_ALIAS, help=f"the alias to move back (default: {PRODUCTION_ALIAS})")
    back.add_argument(
        "--registered-model-name",
        default=None,
        help="MLflow registered model (default: the one the current champion was registered in)",
    )
    back.add_argument("--experiment-name", default="trainflow", help="MLflow experiment of the rollback run")
    back.set_defaults(handler=cmd_rollback)

    sweeps = commands.add_parser("sweeps", help="hyperparameter sweeps (Hydra multirun): list, show, choose the best")
    sweep_verbs = sweeps.add_subparsers(dest="verb", required=True)
    sweep_verbs.add_parser("list", help="the sweeps whose trials logged models").set_defaults(handler=cmd_sweeps_list)
    for verb, handler, help_text in (
        ("show", cmd_sweeps_show, "the models a sweep's trials logged, best first"),
        ("best", cmd_sweeps_best, "point model_export:candidate (--alias) at the sweep's best model"),
    ):
        command = sweep_verbs.add_parser(verb, help=help_text)
        command.add_argument("sweep_id", help="the sweep's id (trainflow sweeps list)")
        command.add_argument(
            "--metric",
            required=verb == "best",
            default="roc_auc_ovo",
            help="the validation metric to compare (model_export metadata 'validation')",
        )
        command.add_argument("--lower-is-better", action="store_true", help="for error metrics: log_loss, mae, rmse")
        if verb == "best":
            command.add_argument("--alias", default="candidate", help="the alias to set (default: candidate)")
            command.add_argument("--json", action="store_true", help="print one JSON document instead of text")
        command.set_defaults(handler=handler)
    for leaf in _leaf_parsers(parser):  # the global options after the subcommand too
        add_global_options(leaf)
    add_completion_command(commands)
    return parser


def add_completion_command(commands: argparse._SubParsersAction) -> None:
    """``trainflow completion SHELL``. It reads no store, so it takes none of the global options."""
    completion = commands.add_parser("completion", help="print the tab-completion script for a shell")
    completion.add_argument("shell", choices=SHELLS, help="the shell the script is for")
    completion.set_defaults(handler=cmd_completion)


# Exit status when the reader of our output went away (`trainflow artifacts show x | head -1`):
# 128 + SIGPIPE, what the shell reports for any tool stopped that way (`yes | head`), so a
# script with `set -o pipefail` treats trainflow like the rest, and the output is known
# to be cut short; 0 would claim everything was written.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> None:
    try:
        run(argv)
        sys.stdout.flush()  # a reader that is gone shows here, not in Python's flush at exit
    except BrokenPipeError:
        # Python flushes stdout once more at exit and would report the pipe again: write to devnull instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(EXIT_BROKEN_PIPE) from None


def run(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` and run the command, a user error ending as one line and exit status 1."""
    args = global_options(build_parser().parse_args(argv))
    configure_logs(level_from_flags(args.verbose, args.quiet))
    if args.command == "completion":  # needs no store
        args.handler(args)
        return
    with exit_on_user_error("trainflow"):
        root = args.root or default_root()
        if args.command == "data-schema":  # may read a plain file: opens the store only if it needs it
            args.handler(root, args)
            return
        if args.command in ("artifacts", "sweeps") and choose_backend(args.backend)[0] == "wandb":
            import wandb

            api = open_api(wandb, 30, instead="use --backend local to read the local store")
            project = args.project or os.environ.get("WANDB_PROJECT")
            if not project:
                raise TrainflowError("name the W&B project: --project NAME (or set WANDB_PROJECT)")
            store = WandbArtifactStore(wandb, api, project, args.entity, download_root=root / "wandb")
            args.handler(store, args)
            return
        if args.command != "init" and not (root / "index.db").is_file():
            raise TrainflowError(
                f"no artifact store at {root.resolve()}: set TRAINFLOW_HOME or --root, or run the pipeline"
            )
        args.handler(LocalArtifactStore(root, project=args.project), args)


if __name__ == "__main__":
    main(sys.argv[1:])
