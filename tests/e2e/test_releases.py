"""Released versions: `mlflow run <git-uri> -v <tag>` runs a tagged release, and
``main.components_repository`` runs the steps' code from a repository at a pinned version.

The release is built from the files of this checkout (tracked, and new ones not ignored),
committed in a scratch repository and tagged, then cloned bare: the test needs neither a
committed work tree nor any network.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from support.project import BIN_DIR, MLFLOW, PROJECT_DIR, pipeline_env, project_store, run_command

TAG = "v1.0.0"
TRAINFLOW = str(BIN_DIR / "trainflow")


@dataclass(frozen=True)
class Release:
    uri: str  # file:// URI of the bare repository, named without .git (see trainflow.config.components)
    commit: str


def _git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=trainflow tests", "-c", "user.email=tests@trainflow.invalid"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    root = tmp_path_factory.mktemp("release")
    work = root / "work"
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=PROJECT_DIR)
    for name in filter(None, listed.split("\0")):
        source = PROJECT_DIR / name
        if source.is_file():  # a tracked file deleted in the work tree is not part of it
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    _git("init", "-q", "-b", "main", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "trainflow release", cwd=work)
    _git("tag", TAG, cwd=work)
    _git("clone", "-q", "--bare", str(work), str(root / "trainflow.git"), cwd=root)
    return Release(uri=f"file://{root / 'trainflow'}", commit=_git("rev-parse", "HEAD", cwd=work).strip())


def _runs_by_step(home: Path) -> dict[str, mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("trainflow")
    runs = client.search_runs([experiment.experiment_id])
    return {run.data.tags["trainflow.step"]: run for run in runs if "trainflow.step" in run.data.tags}


def test_a_tagged_release_runs_from_git_and_its_commit_is_in_the_lineage(release: Release, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = pipeline_env(home)
    steps = "fetch_data,split_data"
    result = run_command(
        [
            MLFLOW,
            "run",
            release.uri,
            "-v",
            TAG,
            "--env-manager",
            "local",
            "--experiment-name",
            "trainflow",
            "-P",
            f"steps={steps}",
        ],
        env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = _runs_by_step(home)
    assert set(runs) == {"pipeline", *steps.split(",")}
    for step, run in runs.items():
        assert run.data.tags["mlflow.source.git.commit"] == release.commit, step
        if step != "pipeline":
            assert run.data.tags["trainflow.git_commit"] == release.commit, step
    # The release's own data file was read: the clone, not this checkout.
    raw = project_store(home).get("raw_data:latest")
    assert raw.metadata["source"] != (PROJECT_DIR / "data" / "penguins.csv").as_uri()
    assert raw.metadata["source"].endswith("/data/penguins.csv")

    lineage = run_command([TRAINFLOW, "artifacts", "lineage", "trainval_data.parquet:latest"], env)
    assert lineage.returncode == 0, lineage.stderr
    chain = [line for line in lineage.stdout.splitlines() if ":v" in line]
    assert len(chain) == 2 and all(f"commit {release.commit[:12]}" in line for line in chain), lineage.stdout
    show = run_command([TRAINFLOW, "artifacts", "show", "trainval_data.parquet:latest"], env)
    assert f"git commit: {release.commit}" in show.stdout, show.stdout


def test_components_from_a_repository_at_a_pinned_version_use_the_pipelines_config(
    release: Release, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = pipeline_env(home)
    result = run_command(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "main.steps='fetch_data,split_data'",
            f"main.components_repository='{release.uri}#components'",
            f"main.components_version={TAG}",
        ],
        env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = _runs_by_step(home)
    assert set(runs) == {"pipeline", "fetch_data", "split_data"}
    for step in ("fetch_data", "split_data"):
        tags = runs[step].data.tags
        assert tags["mlflow.source.git.commit"] == release.commit, step
        assert tags["mlflow.source.name"].startswith(release.uri), tags["mlflow.source.name"]
    # Code from the release, configuration from the pipeline: data.uri is this project's file,
    # and the artifacts are in the pipeline's store.
    raw = project_store(home).get("raw_data:latest")
    assert raw.metadata["source"] == (PROJECT_DIR / "data" / "penguins.csv").as_uri()
    assert raw.run.git_commit == release.commit
    assert runs["split_data"].data.tags["trainflow.input.raw_artifact"] == raw.ref


def test_a_release_version_that_does_not_exist_is_one_line(store_env: dict[str, str], tmp_path: Path) -> None:
    bare = tmp_path / "components"
    subprocess.run(["git", "init", "-q", "--bare", str(bare.with_suffix(".git"))], check=True)
    result = run_command(
        [
            str(BIN_DIR / "python"),
            "main.py",
            "main.steps=train_model",
            f"main.components_repository='file://{bare}'",
            "main.components_version=v9.9",
        ],
        store_env,
    )
    assert result.returncode == 1
    stopped = [line for line in result.stderr.splitlines() if line.startswith("[pipeline] stopped")]
    assert len(stopped) == 1 and "couldn't find remote ref v9.9" in stopped[0], result.stderr[-2000:]
    assert "resume with -P steps=train_model" in stopped[0]
