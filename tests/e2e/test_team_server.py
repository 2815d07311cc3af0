"""A team's tracking server for real, on 127.0.0.1: PostgreSQL (runs, registry, MLflow's
users), an S3 server (rclone serve s3: the artifacts) and `mlflow server --app-name
basic-auth` in front of both, started by the script users run (`make team-server`:
scripts/team_server.py) and stopped by the fixture whatever happens.

Two whole pipelines at once log to it with a worker's account (not an admin), sharing one
store: the runs are rows in PostgreSQL, the model, plots and reports objects in the bucket,
`models:/<project>@prod` loads and predicts in a fresh process from a clean folder with
nothing but the server's address and the account, and the registry agrees with the store. A
client without the credentials, or with wrong ones, is refused (HTTP 401; `trainflow` says so
in one line), and no secret of the environment reaches anything written: the logs, a dump of
the databases, the bucket's objects, the store's files, the servers' folders.

The test measures itself: its wall time and the peak resident memory of the servers and of
the pipelines, printed and kept in .test-artifacts/team-server/measurements.json.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from support.processes import PeakMemory, free_port, stop_process_group, wait_for_output
from support.project import (
    BIN_DIR,
    MLFLOW,
    PENGUINS_PROJECT,
    PROJECT_DIR,
    error_lines,
    pipeline_env,
    project_store,
    run_command,
)

from trainflow.pipeline.steps import select_steps

# Three servers and two whole pipelines at once: about three minutes on 2 shared cores.
pytestmark = pytest.mark.slow

SCRIPT = PROJECT_DIR / "scripts" / "team_server.py"
MEASUREMENTS = PROJECT_DIR / ".test-artifacts" / "team-server" / "measurements.json"
PIPELINES = 2
STEPS = select_steps("all")
# Every secret the script takes, new for each run: none may end up in anything written.
SECRETS = {
    "MLFLOW_TRACKING_PASSWORD": f"worker-password-{secrets.token_hex(8)}",
    "MLFLOW_AUTH_ADMIN_PASSWORD": f"admin-password-{secrets.token_hex(8)}",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": f"csrf-key-{secrets.token_hex(8)}",
    "PGPASSWORD": f"database-password-{secrets.token_hex(8)}",
    "AWS_ACCESS_KEY_ID": f"TRAINFLOWKEY{secrets.token_hex(4).upper()}",
    "AWS_SECRET_ACCESS_KEY": f"s3-secret-{secrets.token_hex(12)}",
}
WORKER = "trainflow-worker"
ADMIN = "team-admin"


@dataclass
class Team:
    """The script's three servers and what a test needs to reach them."""

    uri: str
    folder: Path
    postgres_port: int
    s3_endpoint: str
    memory: PeakMemory
    outputs: dict[str, str] = field(default_factory=dict)  # what the commands printed, searched for secrets

    def worker_env(self, base: dict[str, str]) -> dict[str, str]:
        """A worker's environment: the server, its account, and (to show that nothing leaks
        them, not because it needs them) the S3 keys too."""
        return {
            **base,
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": WORKER,
            "MLFLOW_TRACKING_PASSWORD": SECRETS["MLFLOW_TRACKING_PASSWORD"],
            "AWS_ACCESS_KEY_ID": SECRETS["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": SECRETS["AWS_SECRET_ACCESS_KEY"],
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    def sql(self, database: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres_port,
            user="mlflow",
            password=SECRETS["PGPASSWORD"],
            dbname=database,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall()
        finally:
            connection.close()

    def bucket(self, **options: Any) -> Any:
        """A boto3 client of the S3 server, with its key pair unless ``options`` say otherwise."""
        import boto3
        from botocore.config import Config

        defaults = {
            "aws_access_key_id": SECRETS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": SECRETS["AWS_SECRET_ACCESS_KEY"],
            "config": Config(retries={"max_attempts": 1}),
        }
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1", **{**defaults, **options})

    def objects(self) -> dict[str, bytes]:
        """Every object in the bucket, by key, as the S3 API returns it."""
        client = self.bucket()
        keys = [
            item["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
            for item in page.get("Contents", [])
        ]
        return {key: client.get_object(Bucket="mlflow", Key=key)["Body"].read() for key in keys}


def status_of(url: str, user: str | None = None, password: str | None = None) -> int:
    """The HTTP status of a POST that lists one experiment, with basic auth when ``user`` is given."""
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search", b'{"max_results": 1}', headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def postgres_bin_dir() -> Path | None:
    """Where the script finds ``initdb`` and ``postgres`` (and so ``pg_dump``), or None."""
    spec = importlib.util.spec_from_file_location("team_server", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    try:
        return Path(script.postgres_bin())
    except script.Failed:
        return None


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    """The script's servers on free loopback ports, in a folder of their own under /tmp (as
    root, PostgreSQL runs as another user, who must be able to enter it: pytest's own
    temporary folders are closed to other users)."""
    if postgres_bin_dir() is None:
        pytest.fail("PostgreSQL's initdb is missing: run `make postgres` (Debian's postgresql)", pytrace=False)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="trainflow-team-"))
    root.chmod(0o711)
    folder = root / "team"
    ports = {"port": free_port(), "postgres": free_port(), "s3": free_port()}
    command = [
        sys.executable,
        str(SCRIPT),
        str(folder),
        "--port",
        str(ports["port"]),
        "--postgres-port",
        str(ports["postgres"]),
        "--s3-port",
        str(ports["s3"]),
    ]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "PG"))},
        **SECRETS,
        "MLFLOW_TRACKING_USERNAME": WORKER,
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    log = root / "team-server.out"
    with log.open("wb") as output:
        # Its own process group: the script, the three servers and their workers stop together.
        server = subprocess.Popen(
            command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    memory = PeakMemory()
    memory.watch("servers", server.pid)
    try:
        with memory:
            wait_for_output("ready;", server, log)
            team = Team(
                f"http://127.0.0.1:{ports['port']}",
                folder,
                ports["postgres"],
                f"http://127.0.0.1:{ports['s3']}",
                memory,
            )
            yield team
    finally:
        stop_process_group(server)
        team_output = log.read_text(errors="replace")
        shutil.rmtree(root, ignore_errors=True)
        _record(memory, started)
    assert "postgres stopped" in team_output, team_output[-2000:]


@pytest.fixture(scope="module")
def pipelines(team: Team, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[str]]:
    """`trainflow init`, then two whole pipelines at once with a worker's account, sharing one
    store (one TRAINFLOW_HOME: the shared-storage set-up) and the server; their outputs."""
    home = tmp_path_factory.mktemp("team-pipelines") / "home"
    env = team.worker_env(pipeline_env(home))
    init = run_command([str(BIN_DIR / "trainflow"), "init"], env)
    assert init.returncode == 0, init.stderr
    assert f"MLflow tracking: {team.uri} (experiment 'trainflow'" in init.stdout
    team.outputs["trainflow init"] = init.stdout + init.stderr
    processes = []
    for index in range(PIPELINES):
        # main.cache=false: both pipelines write every step, so the writers really race
        options = f"model.random_forest.n_estimators={20 + index} split.random_seed={index} main.cache=false"
        command = [MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"]
        process = subprocess.Popen(
            [*command, "-P", f"hydra_options={options}"],
            cwd=PROJECT_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        team.memory.watch(f"pipeline {index}", process.pid)
        processes.append(process)
    outputs = []
    try:
        for index, process in enumerate(processes):
            stdout, stderr = process.communicate(timeout=1200)
            assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
            team.outputs[f"pipeline {index}"] = stdout + stderr
            outputs.append(stdout + stderr)
    finally:
        for process in processes:  # the other one, when one failed
            if process.poll() is None:
                stop_process_group(process)
    return home, env, outputs


def test_both_pipelines_are_rows_in_postgres(team: Team, pipelines: tuple[Path, dict[str, str], list[str]]) -> None:
    """Every run of both pipelines is a FINISHED row of the server's PostgreSQL database,
    each step's run under its pipeline's; nothing went to the store's own SQLite database."""
    home, env, _ = pipelines
    client = mlflow.MlflowClient(team.uri)
    with _credentials(env):
        experiment = client.get_experiment_by_name("trainflow")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    rows = team.sql(
        "mlflow",
        "SELECT r.run_uuid, r.status, t.value FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        "LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'trainflow.step' WHERE e.name = %s",
        "trainflow",
    )
    assert len(rows) == PIPELINES * (1 + len(STEPS))
    assert {run_id for run_id, _, _ in rows} == {run.info.run_id for run in runs}
    assert {status for _, status, _ in rows} == {"FINISHED"}
    steps = [step for _, _, step in rows]
    assert sorted(steps) == sorted(["pipeline", *STEPS] * PIPELINES)
    parents = {run.info.run_id for run in runs if run.data.tags["trainflow.step"] == "pipeline"}
    assert all(run.data.tags["mlflow.parentRunId"] in parents for run in runs if run.info.run_id not in parents)
    # The worker's account made the experiment (it may manage it), and it is not an admin.
    assert team.sql(
        "mlflow_auth",
        "SELECT p.permission FROM role_permissions p JOIN user_role_assignments a ON a.role_id = p.role_id "
        "JOIN users u ON u.id = a.user_id WHERE u.username = %s AND p.resource_type = 'experiment' "
        "AND p.resource_pattern = %s",
        WORKER,
        experiment.experiment_id,
    ) == [("MANAGE",)]
    assert team.sql("mlflow_auth", "SELECT username, is_admin FROM users ORDER BY username") == sorted(
        [(ADMIN, True), (WORKER, False)]
    )
    local = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    assert local.search_runs([e.experiment_id for e in local.search_experiments()]) == []


def test_the_models_plots_and_reports_are_objects_in_the_bucket(
    team: Team, pipelines: tuple[Path, dict[str, str], list[str]]
) -> None:
    """The server wrote every run artifact and LoggedModel file to the bucket (the S3 API
    lists them); the registered model's bytes there are the store's model_export:prod."""
    home, env, _ = pipelines
    objects = team.objects()
    client = mlflow.MlflowClient(team.uri)
    with _credentials(env):
        experiment = client.get_experiment_by_name("trainflow")
        runs = {run.info.run_id: run for run in client.search_runs([experiment.experiment_id], max_results=1000)}
        models = client.search_logged_models([experiment.experiment_id])
        prod = client.get_model_version_by_alias(PENGUINS_PROJECT, "prod")
    prefix = f"artifacts/{experiment.experiment_id}"
    for run_id, run in runs.items():
        step = run.data.tags["trainflow.step"]
        if step in ("train_model", "test_model"):
            for plot in ("confusion_matrix.png", "roc_curves.png", "feature_importance.png"):
                key = f"{prefix}/{run_id}/artifacts/plots/{plot}"
                assert objects.get(key, b"").startswith(b"\x89PNG"), key
        if step == "check_data":
            report = json.loads(objects[f"{prefix}/{run_id}/artifacts/data_check_report.json"])
            assert report["passed"] is True
            assert f"{prefix}/{run_id}/artifacts/data_check_report.md" in objects
        if step == "promote_model":
            assert f"{prefix}/{run_id}/artifacts/promotion_decision.json" in objects
    assert len(models) == PIPELINES
    for model in models:
        files = {key.rsplit("/", 1)[1] for key in objects if key.startswith(f"{prefix}/models/{model.model_id}/")}
        assert {"MLmodel", "model.skops", "requirements.txt", "input_example.json"} <= files, model.model_id
    [prod_model] = [model for model in models if prod.source == f"models:/{model.model_id}"]
    in_bucket = objects[f"{prefix}/models/{prod_model.model_id}/artifacts/model.skops"]
    store = project_store(home)
    in_store = (store.use_artifact("model_export:prod") / "model.skops").read_bytes()
    assert hashlib.sha256(in_bucket).hexdigest() == hashlib.sha256(in_store).hexdigest()


def test_two_pipelines_at_once_lose_nothing_and_the_registry_agrees_with_the_store(
    team: Team, pipelines: tuple[Path, dict[str, str], list[str]]
) -> None:
    home, env, outputs = pipelines
    store = project_store(home)
    assert store.verify().ok
    for name in ("raw_data", "data_check_report", "trainval_data.parquet", "test_data.parquet", "model_export"):
        assert [v.version for v in store.list_versions(name)] == list(range(PIPELINES)), name
    logged = [re.search(r"logged: (.*)", stdout).group(1).split(", ") for stdout in outputs]
    assert len({next(ref for ref in refs if ref.startswith("model_export:")) for refs in logged}) == PIPELINES

    client = mlflow.MlflowClient(team.uri)
    with _credentials(env):
        versions = client.search_model_versions(f"name = '{PENGUINS_PROJECT}'")
        prod = client.get_model_version_by_alias(PENGUINS_PROJECT, "prod")
    store_prod = store.get("model_export:prod")
    # The alias names the store's champion, and every registered version the store version it came from.
    assert prod.tags["trainflow.artifact"] == store_prod.ref
    assert prod.tags["trainflow.digest"] == store_prod.digest
    assert int(prod.version) == store_prod.metadata["registry"][PENGUINS_PROJECT]
    for version in versions:
        assert version.tags["trainflow.digest"] == store.get(version.tags["trainflow.artifact"]).digest
    registered = {version.tags["trainflow.artifact"] for version in versions}
    assert len(registered) == len(versions) >= 1  # no store version registered twice
    promoted = {d.after for d in store.promotions("model_export", "prod") if d.after != d.before}
    assert promoted <= registered
    # A version registered but never promoted is a race's loser: its pipeline registered it,
    # found the champion moved meanwhile, put the registry's alias back and decided again.
    for loser in registered - promoted:
        [output] = [text for text, refs in zip(outputs, logged) if loser in refs]
        assert "deciding again against the new champion" in output, loser
    # PostgreSQL says the same.
    assert team.sql(
        "mlflow", "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'prod'", PENGUINS_PROJECT
    ) == [(int(prod.version),)]


def test_the_production_model_loads_in_a_fresh_process_from_a_clean_folder(
    team: Team, pipelines: tuple[Path, dict[str, str], list[str]], tmp_path: Path
) -> None:
    """`models:/<project>@prod` with nothing but the server's address and the account: no
    store, no S3 keys, no project folder; the model needs none of trainflow's code."""
    rows = pd.read_csv(PROJECT_DIR / "data" / "penguins.csv").drop(columns=["species"]).head(25)
    clean = tmp_path / "elsewhere"
    clean.mkdir()
    rows.to_csv(clean / "rows.csv", index=False)
    program = (
        "import json, sys, mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model('models:/{PENGUINS_PROJECT}@prod')\n"
        "predictions = model.predict(pd.read_csv('rows.csv'))\n"
        "print(json.dumps({'columns': list(predictions.columns), 'rows': len(predictions),\n"
        "    'sums': predictions.sum(axis=1).round(9).tolist(), 'trainflow': 'trainflow' in sys.modules}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(clean),
        "MLFLOW_TRACKING_URI": team.uri,
        "MLFLOW_TRACKING_USERNAME": WORKER,
        "MLFLOW_TRACKING_PASSWORD": SECRETS["MLFLOW_TRACKING_PASSWORD"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    result = run_command([sys.executable, "-c", program], env, cwd=clean)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["columns"] == ["Adelie", "Chinstrap", "Gentoo"] and answer["rows"] == len(rows)
    assert all(abs(total - 1) < 1e-6 for total in answer["sums"])
    assert answer["trainflow"] is False
    team.outputs["fresh process"] = result.stdout + result.stderr


@pytest.mark.parametrize("password", [None, "not-the-password-1234"], ids=["no credentials", "wrong password"])
def test_a_client_without_the_right_credentials_is_refused(
    team: Team, pipelines: tuple[Path, dict[str, str], list[str]], password: str | None, tmp_path: Path
) -> None:
    """HTTP 401 from the server; `trainflow init` and the pipeline say so in one line, `mlflow
    run` (MLflow's own command) on its last line; nothing is written to the server."""
    assert status_of(team.uri) == 401
    assert status_of(team.uri, WORKER, "not-the-password-1234") == 401
    assert status_of(team.uri, "nobody", SECRETS["MLFLOW_TRACKING_PASSWORD"]) == 401
    assert status_of(team.uri, WORKER, SECRETS["MLFLOW_TRACKING_PASSWORD"]) == 200
    runs_before = team.sql("mlflow", "SELECT count(*) FROM runs")

    env = team.worker_env(pipeline_env(tmp_path / "home"))
    if password is None:
        del env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]
    else:
        env["MLFLOW_TRACKING_PASSWORD"] = password
    init = run_command([str(BIN_DIR / "trainflow"), "init"], env)
    main = run_command([sys.executable, "main.py"], env)
    run = run_command([MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], env)
    for name, result in (("trainflow init", init), ("python main.py", main)):
        team.outputs[f"{name}, {password or 'no credentials'}"] = result.stdout + result.stderr
        assert result.returncode == 1, name + result.stderr[-3000:]
        assert "Traceback" not in result.stderr, name + result.stderr[-3000:]
        [line] = error_lines(result.stderr)
        assert line.startswith("trainflow: error: the MLflow tracking server") and "HTTP 401" in line, line
        assert "MLFLOW_TRACKING_USERNAME" in line and team.uri in line, line
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert "401" in last and "not authenticated" in last, last
    assert team.sql("mlflow", "SELECT count(*) FROM runs") == runs_before

    # The bucket and the database refuse strangers too.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as refused:
        team.bucket(aws_secret_access_key="wrong").list_objects_v2(Bucket="mlflow")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    from botocore import UNSIGNED
    from botocore.config import Config

    with pytest.raises(ClientError):  # an anonymous request
        team.bucket(config=Config(signature_version=UNSIGNED)).list_objects_v2(Bucket="mlflow")
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=team.postgres_port, user="mlflow", password="wrong", dbname="mlflow")


def test_no_secret_reaches_the_logs_the_databases_the_bucket_or_the_store(
    team: Team, pipelines: tuple[Path, dict[str, str], list[str]]
) -> None:
    """Every secret of the environment is searched for in: a dump of both databases (pg_dump),
    every object in the bucket (read through S3), every file of the servers' folder (the
    PostgreSQL cluster's files, the bucket's folder, the logs, the auth configuration), every
    file of the shared store and what every command printed."""
    home, _, _ = pipelines
    dumps = {}
    for database in ("mlflow", "mlflow_auth"):
        dump = subprocess.run(
            [
                str(postgres_bin_dir() / "pg_dump"),
                "-h",
                "127.0.0.1",
                "-p",
                str(team.postgres_port),
                "-U",
                "mlflow",
                database,
            ],
            env={**os.environ, "PGPASSWORD": SECRETS["PGPASSWORD"]},
            capture_output=True,
            check=True,
        )
        dumps[f"pg_dump {database}"] = dump.stdout
    assert b"trainflow.step" in dumps["pg_dump mlflow"] and WORKER.encode() in dumps["pg_dump mlflow_auth"]
    objects = {f"s3://mlflow/{key}": data for key, data in team.objects().items()}
    assert len(objects) > 30
    files = _contents(team.folder.parent, home)  # the servers' folder and the script's output beside it
    # Given in the environment, no secret was generated, so the script kept none.
    assert not (team.folder / "secrets.env").exists()
    assert any("/logs/mlflow.log" in name for name in files) and any("/postgres/base/" in name for name in files)
    outputs = {name: text.encode() for name, text in team.outputs.items()}
    everything = {**dumps, **objects, **files, **outputs}
    leaks = {
        name: secret_name
        for name, data in everything.items()
        for secret_name, secret in SECRETS.items()
        if secret.encode() in data
    }
    assert leaks == {}, f"secrets found: {leaks}"


def _contents(*folders: Path) -> dict[str, bytes]:
    """Every regular file under ``folders``, by path (a file PostgreSQL removes meanwhile is skipped)."""
    found = {}
    for folder in folders:
        for path in folder.rglob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and not path.is_symlink():
                    found[str(path)] = path.read_bytes()
    return found


@contextlib.contextmanager
def _credentials(env: dict[str, str]) -> Iterator[None]:
    """This process's MLflow client authenticates as the worker for the block."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            patch.setenv(name, env[name])
        yield


def _record(memory: PeakMemory, started: float) -> None:
    """The module's wall time (servers up, pipelines, checks, servers down) and the peak
    memory of the servers' processes and of each pipeline's, printed and kept for a human."""
    peaks = {name: round(value / 2**20) for name, value in memory.peaks().items()}
    measured = {"wall_seconds": round(time.monotonic() - started, 1), "peak_rss_mib": peaks}
    MEASUREMENTS.parent.mkdir(parents=True, exist_ok=True)
    MEASUREMENTS.write_text(json.dumps(measured, indent=2) + "\n")
    print(f"team server test: {json.dumps(measured)} ({MEASUREMENTS})")
