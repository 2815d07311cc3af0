"""Tests for the ``trainflow`` console script, run as a real subprocess against a store
filled through the Python API.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.project import PROJECT_DIR, error_lines, project_store, run_command

from trainflow.cli.completion import SHELLS
from trainflow.cli.main import run as cli_run
from trainflow.store.local import LocalArtifactStore
from trainflow.store.records import RunRecord

TRAINFLOW = str(Path(sys.executable).parent / "trainflow")


@dataclass
class Filled:
    """A store holding raw.csv (2 versions) -> split (dir) -> model (file), with the source bytes."""

    root: Path
    store: LocalArtifactStore
    raw_bytes: list[bytes]
    split_files: dict[str, bytes]
    model_bytes: bytes


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def filled(tmp_path: Path) -> Filled:
    root = tmp_path / "store"
    store = LocalArtifactStore(root)
    raw_bytes = [b"x,y\n1,2\n", b"x,y\n1,2\n3,4\n"]
    raw_file = tmp_path / "raw.csv"
    download = RunRecord("run-download", "download", git_commit="0123456789abcdef" * 2 + "01234567")
    for content in raw_bytes:
        raw_file.write_bytes(content)
        store.log_artifact(
            raw_file,
            "raw.csv",
            "raw_data",
            description="raw rows",
            metadata={"source": "file:///data/raw.csv", "sha256": "feedface"},
            run=download,
        )

    split_run = RunRecord("run-split", "split")
    store.record_usage("raw.csv:v1", split_run)
    split_files = {"train/part-0.csv": b"x,y\n1,2\n", "test/part-0.csv": b"x,y\n3,4\n", "stats.json": b"{}"}
    split_dir = tmp_path / "split"
    for relative, content in split_files.items():
        (split_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (split_dir / relative).write_bytes(content)
    store.log_artifact(split_dir, "split", "dataset", metadata={"test_size": 0.5, "rows": 2}, run=split_run)

    train_run = RunRecord("run-train", "train")
    store.use_artifact("split:latest", run=train_run)
    model_bytes = os.urandom(4096)
    model_file = tmp_path / "model.skops"
    model_file.write_bytes(model_bytes)
    store.log_artifact(model_file, "model", "model", metadata={"auc": 0.91}, run=train_run)
    return Filled(root, store, raw_bytes, split_files, model_bytes)


def trainflow(filled_root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_command([TRAINFLOW, "--root", str(filled_root), *args], env)


def test_list_shows_names_types_and_version_counts(filled: Filled, store_env: dict[str, str]) -> None:
    """`artifacts list` prints one line per name with its type and number of versions."""
    result = trainflow(filled.root, store_env, "artifacts", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = {(name, type_, count) for name, type_, count in filled.store.list_names()}
    assert expected == {("model", "model", 1), ("raw.csv", "raw_data", 2), ("split", "dataset", 1)}
    assert lines == [f"{name}  [{type_}]  {count} version(s)" for name, type_, count in filled.store.list_names()]


def test_list_name_shows_its_versions(filled: Filled, store_env: dict[str, str]) -> None:
    """`artifacts list NAME` prints each version with its aliases, oldest first."""
    result = trainflow(filled.root, store_env, "artifacts", "list", "raw.csv")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("raw.csv:v0 [raw_data]")
    assert lines[1].startswith("raw.csv:v1 [raw_data]")
    assert "aliases: latest" in lines[1] and "latest" not in lines[0]
    assert f"{len(filled.raw_bytes[1])} bytes" in lines[1]


def test_show_prints_metadata_and_files(filled: Filled, store_env: dict[str, str]) -> None:
    """`artifacts show NAME:vN` prints the producer, the metadata as JSON and every file with its digest."""
    result = trainflow(filled.root, store_env, "artifacts", "show", "split:v0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].startswith("split:v0 [dataset] (split, run run-split)")

    metadata_text = out.split("metadata: ", 1)[1].split("\nfiles:", 1)[0]
    assert json.loads(metadata_text) == {"test_size": 0.5, "rows": 2}

    file_lines = out.split("\nfiles:\n", 1)[1].splitlines()
    version = filled.store.get("split:v0")
    assert len(file_lines) == len(filled.split_files)
    for stored in version.files:
        assert any(line.split()[0] == stored.path and stored.sha256 in line for line in file_lines), stored.path


def test_json_output_is_the_store_s_records(filled: Filled, store_env: dict[str, str]) -> None:
    """--json: what a script reads instead of parsing the text."""
    names = json.loads(trainflow(filled.root, store_env, "artifacts", "list", "--json").stdout)
    assert {(n["name"], n["type"], n["versions"]) for n in names} == set(filled.store.list_names())
    versions = json.loads(trainflow(filled.root, store_env, "artifacts", "list", "raw.csv", "--json").stdout)
    assert [(v["ref"], v["aliases"]) for v in versions] == [("raw.csv:v0", []), ("raw.csv:v1", ["latest"])]
    shown = json.loads(trainflow(filled.root, store_env, "artifacts", "show", "split:v0", "--json").stdout)
    version = filled.store.get("split:v0")
    assert shown["ref"] == "split:v0" and shown["digest"] == version.digest and shown["metadata"] == version.metadata
    assert {f["path"]: f["sha256"] for f in shown["files"]} == {f.path: f.sha256 for f in version.files}
    assert shown["run"]["run_id"] == "run-split"


def test_global_options_may_follow_the_subcommand(filled: Filled, store_env: dict[str, str]) -> None:
    """`trainflow artifacts list --root R` as `trainflow --root R artifacts list`, as git and
    mlflow users type them; given in both places, the later one counts."""
    before = run_command([TRAINFLOW, "--root", str(filled.root), "artifacts", "list", "--json"], store_env)
    after = run_command([TRAINFLOW, "artifacts", "list", "--json", "--root", str(filled.root)], store_env)
    assert before.returncode == after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout) != []
    elsewhere = run_command(
        [TRAINFLOW, "--root", str(filled.root), "artifacts", "list", "--root", "/nowhere"], store_env
    )
    assert error_lines(elsewhere.stderr) == [
        "trainflow: error: no artifact store at /nowhere: set TRAINFLOW_HOME or --root, or run the pipeline"
    ]


def test_quiet_prints_only_errors_and_results_print_always(
    filled: Filled, store_env: dict[str, str], tmp_path: Path
) -> None:
    """-q: a command's own messages go, its error line and its results stay; -v is accepted
    before or after the subcommand."""
    said = trainflow(filled.root, store_env, "artifacts", "get", "model:v0", str(tmp_path / "a"))
    assert said.returncode == 0 and said.stdout == f"model:v0 -> {tmp_path / 'a'}\n", said.stderr
    quiet = trainflow(filled.root, store_env, "-q", "artifacts", "get", "model:v0", str(tmp_path / "b"))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert (tmp_path / "b" / "model.skops").read_bytes() == filled.model_bytes  # it still did its work
    verified = trainflow(filled.root, store_env, "artifacts", "verify", "--quiet")
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")
    listed = trainflow(filled.root, store_env, "-q", "artifacts", "list", "--json")
    assert {entry["name"] for entry in json.loads(listed.stdout)} == {"raw.csv", "split", "model"}
    failed = trainflow(filled.root, store_env, "-q", "artifacts", "show", "nope:v0")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.splitlines() == error_lines(failed.stderr) and len(error_lines(failed.stderr)) == 1
    verbose = trainflow(filled.root, store_env, "artifacts", "verify", "-v")
    assert verbose.returncode == 0 and verbose.stdout.splitlines()[-1] == "store OK"


def test_version_and_every_argument_has_help(store_env: dict[str, str]) -> None:
    from trainflow import __version__
    from trainflow.cli.main import build_parser, global_options

    # The CLI reads the backend the pipeline writes to unless told otherwise (config.yaml's artifacts.backend)
    assert global_options(build_parser().parse_args(["artifacts", "list"])).backend == "auto"
    printed = run_command([TRAINFLOW, "--version"], store_env)
    assert printed.returncode == 0 and printed.stdout.strip() == f"trainflow {__version__}"

    def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    silent = [
        f"{parser.prog} {action.dest}"
        for parser in parsers(build_parser())
        for action in parser._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    assert silent == []


def test_show_unknown_alias_prints_one_error_line(filled: Filled, store_env: dict[str, str]) -> None:
    """An unresolvable reference exits non-zero with a single `trainflow: error:` line naming it, no traceback."""
    result = trainflow(filled.root, store_env, "artifacts", "show", "model:nosuchalias")
    assert result.returncode != 0
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("trainflow: error: ")
    assert "model:nosuchalias" in errors[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_list_unknown_name_exits_non_zero(filled: Filled, store_env: dict[str, str]) -> None:
    """`artifacts list NAME` for a name with no versions is an error that lists the names that exist."""
    result = trainflow(filled.root, store_env, "artifacts", "list", "nosuchname")
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert "'nosuchname'" in line and "raw.csv" in line


def test_get_copies_a_directory_version(filled: Filled, store_env: dict[str, str], tmp_path: Path) -> None:
    """`artifacts get NAME:latest DIR` copies the version's tree byte for byte."""
    target = tmp_path / "out" / "split"
    result = trainflow(filled.root, store_env, "artifacts", "get", "split:latest", str(target))
    assert result.returncode == 0, result.stderr
    assert read_tree(target) == filled.split_files
    assert "split:v0" in result.stdout
    # The copy is the user's to edit: not read-only like the store's checkout it came from.
    assert all(path.stat().st_mode & 0o200 for path in target.rglob("*") if path.is_file())


def test_get_copies_a_file_version(filled: Filled, store_env: dict[str, str], tmp_path: Path) -> None:
    """`artifacts get` on a file artifact puts that one file, same name and bytes, into DIR."""
    target = tmp_path / "out"
    for ref, expected in (("model:latest", filled.model_bytes), ("raw.csv:v0", filled.raw_bytes[0])):
        result = trainflow(filled.root, store_env, "artifacts", "get", ref, str(target / ref.replace(":", "_")))
        assert result.returncode == 0, result.stderr
        copied = read_tree(target / ref.replace(":", "_"))
        assert list(copied.values()) == [expected]
    assert (target / "model_latest" / "model.skops").is_file()


def test_alias_then_show_resolves_the_alias(filled: Filled, store_env: dict[str, str]) -> None:
    """`artifacts alias NAME:v0 prod` makes `show NAME:prod` resolve to v0, and the store agrees."""
    result = trainflow(filled.root, store_env, "artifacts", "alias", "raw.csv:v0", "prod")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "raw.csv:prod -> raw.csv:v0"

    shown = trainflow(filled.root, store_env, "artifacts", "show", "raw.csv:prod")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].startswith("raw.csv:v0 ")
    assert "prod" in shown.stdout.splitlines()[0]
    assert filled.store.get("raw.csv:prod").version == 0


def test_alias_refuses_latest_with_one_error_line(filled: Filled, store_env: dict[str, str]) -> None:
    """Setting 'latest' by hand from the CLI fails cleanly and leaves latest on the newest version."""
    result = trainflow(filled.root, store_env, "artifacts", "alias", "raw.csv:v0", "latest")
    assert result.returncode != 0
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert filled.store.get("raw.csv:latest").version == 1


def test_alias_refuses_prod_on_a_model_export_before_any_promotion(tmp_path: Path, store_env: dict[str, str]) -> None:
    """A first champion goes through the gate too: `artifacts alias model_export:v0 prod` on a
    store with no promotion yet is one error line naming the promote command, and sets nothing."""
    store = LocalArtifactStore(tmp_path / "store")
    export = tmp_path / "export"
    export.mkdir()
    (export / "MLmodel").write_text("flavors: {}\n")
    store.log_artifact(export, "model_export", "model_export")
    result = trainflow(store.root, store_env, "artifacts", "alias", "model_export:v0", "prod")
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert "model_export:prod is moved only by the promotion gate" in line and "steps=promote_model" in line
    assert "prod" not in store.get("model_export:v0").aliases
    # Other aliases on the model, and prod on other types, stay the user's to set.
    assert trainflow(store.root, store_env, "artifacts", "alias", "model_export:v0", "staging").returncode == 0
    assert store.get("model_export:staging").version == 0


def test_sweeps_best_refuses_the_production_alias(filled: Filled, store_env: dict[str, str]) -> None:
    """`sweeps best --alias prod` would crown a trial with no test-set gate: one line that
    names the candidate-then-promote route instead, before it looks for the sweep."""
    result = trainflow(
        filled.root, store_env, "sweeps", "best", "some-sweep", "--metric", "roc_auc_ovo", "--alias", "prod"
    )
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert "only the promotion gate does" in line and "promote.model=model_export:candidate" in line
    assert "some-sweep" not in line


def test_lineage_prints_the_chain_indented(filled: Filled, store_env: dict[str, str]) -> None:
    """`artifacts lineage` prints model, then split one level deeper, then raw one level deeper still."""
    result = trainflow(filled.root, store_env, "artifacts", "lineage", "model")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    refs = [line.strip().removeprefix("└─ ").split()[0] for line in lines]
    assert refs == ["model:v0", "split:v0", "raw.csv:v1"]
    indents = [len(line) - len(line.lstrip()) for line in lines]
    assert indents[0] == 0
    assert indents[0] < indents[1] < indents[2]
    assert "└─" in lines[1] and "└─" in lines[2]
    assert "commit 0123456789ab" in lines[2]
    assert "source file:///data/raw.csv" in lines[2]


def test_command_against_a_root_without_a_store_fails_readably(store_env: dict[str, str], tmp_path: Path) -> None:
    """Pointing at a directory with no index.db gives one error line naming it, and creates nothing."""
    empty = tmp_path / "no-store-here"
    for args in (["artifacts", "list"], ["artifacts", "show", "model:v0"]):
        result = run_command([TRAINFLOW, "--root", str(empty), *args], store_env)
        assert result.returncode != 0
        errors = error_lines(result.stderr)
        assert len(errors) == 1, result.stderr
        assert "no artifact store" in errors[0]
        assert str(empty) in errors[0]
        assert "Traceback" not in result.stderr
    assert not empty.exists()


def test_init_creates_the_index(store_env: dict[str, str], tmp_path: Path) -> None:
    """`trainflow init` with a fresh --root creates index.db, after which commands work on it."""
    root = tmp_path / "fresh" / "store"
    result = run_command([TRAINFLOW, "--root", str(root), "init"], store_env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (root / "index.db").is_file()
    assert str(root) in result.stdout
    listing = run_command([TRAINFLOW, "--root", str(root), "artifacts", "list"], store_env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith("no artifacts in")


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single `trainflow: error:` line of a failed command that printed no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith("trainflow: error: ")
    return line


def test_get_into_an_existing_file_fails_readably(filled: Filled, store_env: dict[str, str], tmp_path: Path) -> None:
    """DIR naming a file: one line saying so and what to do, the file and the store untouched."""
    taken = tmp_path / "taken"
    taken.write_bytes(b"mine")
    before = read_tree(filled.root)
    for ref in ("split:latest", "model:latest"):  # a directory version, a file version
        line = _one_error_line(trainflow(filled.root, store_env, "artifacts", "get", ref, str(taken)))
        assert f"{taken} is a file, not a folder" in line and "choose a new folder" in line
    assert taken.read_bytes() == b"mine"
    assert read_tree(filled.root) == before


@pytest.mark.parametrize("place", ["under_a_file", "proc"])
def test_get_into_an_unwritable_place_fails_readably(
    filled: Filled, store_env: dict[str, str], tmp_path: Path, place: str
) -> None:
    """A DIR that cannot be created: one line naming it, the reason and the fix."""
    (tmp_path / "file").write_bytes(b"")
    target = tmp_path / "file" / "sub" if place == "under_a_file" else Path("/proc/trainflow-test")
    for ref in ("split:latest", "model:latest"):
        line = _one_error_line(trainflow(filled.root, store_env, "artifacts", "get", ref, str(target)))
        assert f"cannot write {target}" in line and "choose a new folder" in line


def test_data_schema_out_in_a_missing_folder_fails_readably(
    filled: Filled, store_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "no" / "such" / "folder" / "expectations.yaml"
    line = _one_error_line(trainflow(filled.root, store_env, "data-schema", "infer", "raw.csv:v1", "--out", str(out)))
    assert f"cannot write {out}: No such file or directory" in line and "choose another --out file" in line
    assert not out.parent.exists()


@pytest.mark.parametrize("argument", ["/data/churn.csv", "./nope.csv", "nope.csv", "nope.parquet"])
def test_data_schema_infer_names_a_missing_file(filled: Filled, store_env: dict[str, str], argument: str) -> None:
    """A path (a '/' or a data suffix) that is neither a file nor a stored version is a missing
    file, not an "invalid artifact name"."""
    line = _one_error_line(trainflow(filled.root, store_env, "data-schema", "infer", argument, "--target", "y"))
    assert f"no such file {argument};" in line and "raw_data:latest" in line
    assert "invalid artifact name" not in line


def test_data_schema_infer_names_a_missing_file_or_version(filled: Filled, store_env: dict[str, str]) -> None:
    """Neither a file nor a version: both are said, with the store's own hint about the versions."""
    line = _one_error_line(trainflow(filled.root, store_env, "data-schema", "infer", "raw.csv:v7"))
    assert "no such file raw.csv:v7, and it is not a stored version either" in line
    assert "raw.csv has versions v0, v1" in line


@pytest.mark.parametrize("argument", ["raw.csv", "raw.csv:v1"])
def test_data_schema_infer_still_reads_a_stored_version(
    filled: Filled, store_env: dict[str, str], argument: str
) -> None:
    """An artifact reference keeps working, even one whose name ends like a file's ('raw.csv')."""
    assert not (PROJECT_DIR / "raw.csv").exists()  # run_command runs there
    result = trainflow(filled.root, store_env, "data-schema", "infer", argument, "--target", "y")
    assert result.returncode == 0, result.stderr
    assert "inferred by `trainflow data-schema infer` from raw.csv:v1" in result.stdout


def test_output_into_a_closed_pipe_exits_quietly(filled: Filled, store_env: dict[str, str]) -> None:
    """`trainflow artifacts show X | head -1`: the reader left; exit 141 (128 + SIGPIPE) with nothing on stderr."""
    reader, writer = os.pipe()
    os.close(reader)  # gone before the command writes a byte, so the write always fails
    try:
        result = subprocess.run(
            [TRAINFLOW, "--root", str(filled.root), "artifacts", "show", "split:v0"],
            env=store_env,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)
    assert result.returncode == 141
    assert result.stderr == ""


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        cli_run(list(argv))
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_an_empty_experiment_name_is_one_line(store_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "init", "--experiment-name", "")
    assert code == 1 and err.startswith("trainflow: error: the MLflow experiment name is empty")


@pytest.mark.parametrize(
    "argv",
    [
        ("artifacts", "verify", "--grace-seconds", "-5"),
        ("artifacts", "verify", "--repair", "--grace-seconds", "nan"),
        ("data-schema", "infer", str(PROJECT_DIR / "data" / "penguins.csv"), "--margin", "-1"),
        ("data-schema", "infer", str(PROJECT_DIR / "data" / "penguins.csv"), "--max-categories", "-1"),
    ],
)
def test_negative_numbers_are_refused(store_env: dict[str, str], capsys: pytest.CaptureFixture[str], argv) -> None:
    project_store(store_env["TRAINFLOW_HOME"])  # an empty store
    code, _, err = _cli(capsys, *argv)
    assert code == 2 and "must be a finite number >= 0" in err


def test_w_and_b_that_cannot_be_reached_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The W&B server cannot exist here: ``wandb.Api`` is replaced by what the real SDK
    raises without a key (a double at that boundary), and the command says so in one line."""
    import wandb

    def no_key(timeout: int | None = None) -> None:
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setattr(wandb, "Api", no_key)
    code, _, err = _cli(capsys, "--root", str(tmp_path), "--backend", "wandb", "artifacts", "show", "raw_data:latest")
    assert code == 1 and err.startswith("trainflow: error: cannot reach W&B (No API key configured.")


def test_promotions_of_an_alias_with_no_decision_names_the_alias(filled: Filled, store_env: dict[str, str]) -> None:
    result = trainflow(filled.root, store_env, "promotions", "--alias", "nosuch")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no promotion decisions for model_export:nosuch in ")


def _completion_script(tmp_path: Path, shell: str = "bash") -> Path:
    """``trainflow completion SHELL`` as a user runs it, saved to a file."""
    result = run_command([TRAINFLOW, "completion", shell], dict(os.environ))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    script = tmp_path / f"trainflow.{shell}"
    script.write_text(result.stdout)
    return script


def _bash_completes(script: Path, *words: str, cwd: Path = PROJECT_DIR) -> list[str]:
    """What bash offers at ``trainflow WORDS<TAB>``: the script sourced, the completion
    function called as bash calls it (the last word is the one being typed, "" for a new one)."""
    quoted = " ".join(shlex.quote(word) for word in ("trainflow", *words))
    command = (
        f"source {shlex.quote(str(script))}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
        '_shtab_trainflow; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return sorted(line for line in result.stdout.splitlines() if line)


def test_bash_completion_completes_commands_options_and_choices(tmp_path: Path) -> None:
    """`eval "$(trainflow completion bash)"`: valid bash, and TAB after `trainflow art` gives `artifacts`."""
    from trainflow.cli.main import build_parser

    script = _completion_script(tmp_path)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=60).returncode == 0
    assert "complete -o bashdefault -F _shtab_trainflow trainflow" in script.read_text()

    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert _bash_completes(script, "") == sorted(commands.choices) != []
    assert _bash_completes(script, "art") == ["artifacts"]
    assert _bash_completes(script, "artifacts", "l") == ["lineage", "list"]
    assert _bash_completes(script, "sweeps", "best", "s1", "--l") == ["--lower-is-better"]
    # the global options before and after the subcommand, with their choices
    assert _bash_completes(script, "--backend", "") == ["auto", "local", "wandb"]
    assert _bash_completes(script, "artifacts", "list", "--r") == ["--root"]
    assert _bash_completes(script, "completion", "") == sorted(SHELLS)


def test_bash_completion_completes_folders_where_a_folder_is_wanted(tmp_path: Path) -> None:
    """`artifacts get REF <TAB>` and `--root <TAB>` offer folders only; `--out` files too."""
    script = _completion_script(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "metrics.json").write_text("{}")
    for words in (
        ("artifacts", "get", "model_export:prod", "m"),
        ("--root", "m"),
        ("artifacts", "list", "--root", "m"),
    ):
        assert _bash_completes(script, *words, cwd=tmp_path) == ["models"], words
    infer = ("data-schema", "infer", "raw_data:latest", "--out", "m")
    assert _bash_completes(script, *infer, cwd=tmp_path) == ["metrics.json", "models"]


@pytest.mark.parametrize("shell", SHELLS)
def test_every_shell_gets_a_script_naming_every_command(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    import shtab

    assert set(SHELLS) == set(shtab.SUPPORTED_SHELLS)  # SHELLS spells out the pinned shtab's list
    code, out, err = _cli(capsys, "completion", shell)
    assert code == 0 and err == "" and out.endswith("\n")
    for command in ("init", "artifacts", "data-schema", "promotions", "rollback", "sweeps", "lineage", "infer"):
        assert command in out, (shell, command)


def test_completion_needs_no_store_and_the_other_commands_do_not_import_shtab(tmp_path: Path) -> None:
    """It works anywhere (no store, no TRAINFLOW_HOME); shtab is imported by this command only."""
    env = {k: v for k, v in os.environ.items() if k != "TRAINFLOW_HOME"}
    result = run_command([TRAINFLOW, "completion", "zsh"], env, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("#compdef trainflow"), result.stderr
    assert list(tmp_path.iterdir()) == []
    probe = "import sys; from trainflow.cli.main import build_parser; build_parser(); print('shtab' in sys.modules)"
    assert run_command([sys.executable, "-c", probe], env).stdout.strip() == "False"
