"""`mlflow models generate-dockerfile` on the model a real pipeline promoted (docs/serving.md).

The module runs the whole pipeline once (`mlflow run .`, about 15 s) on a fresh store, then
generates the Dockerfile from the Model Registry's `models:/penguins-species@prod` with the
store's tracking URI, in a network namespace of its own where the machine can make one:
generating needs no network and no Docker engine. Building the image does (`docker build`),
and is not run here.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import mlflow
import pytest
import yaml
from support.project import MLFLOW, PENGUINS_PROJECT, pipeline_env, project_store, run_command, tracking_at

from trainflow.store.blobs import file_sha256

pytestmark = pytest.mark.slow  # a whole pipeline run of its own

REGISTERED = PENGUINS_PROJECT  # promote.registered_model_name: the project's
MODEL_URI = f"models:/{REGISTERED}@prod"
# What MLflow adds to a registered model it downloads: the name and version it came from.
REGISTERED_MODEL_META = "registered_model_meta"


def _without_network() -> list[str]:
    """The prefix that runs a command with no network at all (a new, empty network
    namespace), or [] where this machine cannot make one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    prefix = [unshare, "--net", "--map-root-user"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=60, check=False)
    return prefix if probe.returncode == 0 else []


def _digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != REGISTERED_MODEL_META
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str], bool]:
    """A finished pipeline's store and the folder generate-dockerfile wrote from its prod model."""
    home = tmp_path_factory.mktemp("serving") / "home"
    env = pipeline_env(home)  # as `trainflow init` leaves it
    pipeline = run_command([MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], env)
    assert pipeline.returncode == 0, pipeline.stdout[-3000:] + pipeline.stderr[-3000:]
    out = tmp_path_factory.mktemp("docker") / "serving"
    offline = _without_network()
    command = [*offline, MLFLOW, "models", "generate-dockerfile", "-m", MODEL_URI, "-d", str(out)]
    result = run_command(command, env, cwd=out.parent, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Generated Dockerfile in directory {out}" in result.stderr
    return home, out, env, bool(offline)


def test_the_dockerfile_installs_the_model_folder_with_its_pinned_requirements(generated) -> None:
    _, out, _, _ = generated
    dockerfile = (out / "Dockerfile").read_text()
    model_dir = out / "model_dir"
    pyfunc = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]
    # the Python the model was trained with (this environment's), from the model's MLmodel
    assert pyfunc["python_version"] == platform.python_version()
    assert f"FROM python:{platform.python_version()}-slim\n" in dockerfile
    assert f"RUN pip install mlflow=={mlflow.__version__}\n" in dockerfile
    assert "COPY model_dir /opt/ml/model\n" in dockerfile
    # the image's Python installs the model's python_env.yaml, which is its requirements.txt
    assert "C._install_pyfunc_deps('/opt/ml/model', install_mlflow=False, env_manager='local')" in dockerfile
    assert "C._serve('local')" in dockerfile.splitlines()[-1]
    python_env = yaml.safe_load((model_dir / pyfunc["env"]["virtualenv"]).read_text())
    assert python_env["dependencies"] == ["-r requirements.txt"]
    assert f"pip=={version('pip')}" in python_env["build_dependencies"]

    requirements = (model_dir / "requirements.txt").read_text().split()
    assert f"scikit-learn=={version('scikit-learn')}" in requirements
    assert f"mlflow=={mlflow.__version__}" in requirements
    pins = dict(line.split("==") for line in requirements)  # every line is name==version
    assert len(pins) == len(requirements)
    assert {name: version(name) for name in pins} == pins  # the versions the model was trained with


def test_the_model_folder_is_the_registered_prod_version(generated, tmp_path: Path) -> None:
    """model_dir holds exactly the files of the version `prod` names in the registry, which
    are the store's model_export:prod, and says which version it is."""
    home, out, env, _ = generated
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    registered = client.get_model_version_by_alias(REGISTERED, "prod")
    with tracking_at(env["MLFLOW_TRACKING_URI"]):
        download = mlflow.artifacts.download_artifacts(
            f"models:/{REGISTERED}/{registered.version}", dst_path=str(tmp_path / "registered")
        )
    copied = _digests(out / "model_dir")
    assert copied == _digests(Path(download))
    assert {"MLmodel", "requirements.txt", "python_env.yaml", "model.skops"} <= set(copied)
    prod = project_store(home).get("model_export:prod")
    assert registered.tags["trainflow.artifact"] == prod.ref
    assert copied == {stored.path: stored.sha256 for stored in prod.files}
    meta = yaml.safe_load((out / "model_dir" / REGISTERED_MODEL_META).read_text())
    assert meta == {"model_name": REGISTERED, "model_version": registered.version}


def test_generating_needs_no_network(generated) -> None:
    if not generated[3]:
        pytest.skip("this machine cannot make a network namespace (unshare --net --map-root-user)")
    # The fixture generated it with no network interface but loopback's, down: it got here.
    assert (generated[1] / "Dockerfile").is_file()
