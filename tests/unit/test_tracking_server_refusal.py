"""A tracking server's refusal (HTTP 401/403) is one line that says what to set, and never
prints the credentials a URI may hold. MLflow's own exceptions, no server: the team-server
test (tests/e2e/test_team_server.py) sees the 401 from a real one."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, UNAUTHENTICATED

from trainflow.errors import exit_on_user_error, refused_by_tracking_server


def test_401_says_which_variables_to_set_and_hides_credentials_in_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret-pass@10.0.0.5:5000")
    refused = refused_by_tracking_server(MlflowException("401 Unauthorized", error_code=UNAUTHENTICATED))
    assert refused is not None
    assert "http://10.0.0.5:5000" in str(refused) and "HTTP 401" in str(refused)
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in str(refused)
    assert "s3cret" not in str(refused) and "alice" not in str(refused)


def test_403_names_the_account_and_what_to_ask_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.org")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "never-shown-1234")
    refused = refused_by_tracking_server(MlflowException("Permission denied", error_code=PERMISSION_DENIED))
    assert refused is not None
    assert "HTTP 403" in str(refused) and "'bob'" in str(refused) and "permission" in str(refused)
    assert "never-shown" not in str(refused)


def test_other_errors_and_local_stores_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert refused_by_tracking_server(MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST)) is None
    assert refused_by_tracking_server(ValueError("not MLflow's")) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/mlflow.db")  # 401 cannot come from a file
    assert refused_by_tracking_server(MlflowException("x", error_code=UNAUTHENTICATED)) is None


def test_a_step_refused_by_the_server_exits_with_the_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    with pytest.raises(SystemExit) as exited, exit_on_user_error("train_model"):
        raise MlflowException("401", error_code=UNAUTHENTICATED)
    assert exited.value.code != 0
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("train_model: error: the MLflow tracking server http://127.0.0.1:5000 refused"), line
