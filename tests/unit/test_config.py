"""The config schema, step selection and argument handling: fast, no runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.project import error_lines, run_command

from trainflow.config.schema import flatten, load_config, resolve_paths, split_overrides, validate
from trainflow.errors import ConfigError
from trainflow.ml.data import stratify_target
from trainflow.pipeline.runner import expand_mlproject_args
from trainflow.pipeline.steps import STEPS, select_steps


def test_default_config_composes_and_validates(project_dir: Path) -> None:
    """config.yaml fills every key of the schema with a valid value."""
    cfg = resolve_paths(load_config(project_dir), project_dir)
    validate(cfg)
    assert cfg.main.steps == "all"
    assert cfg.data.target == "species"
    assert cfg.model.task == "classification" and cfg.project == "penguins-species"
    assert Path(cfg.data.uri).is_file()
    assert Path(cfg.artifacts.root).is_absolute()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("main.stepz=all", "main.stepz"),
        ("model.random_forest.n_estimatorz=3", "n_estimatorz"),
        ("split.test_size=abc", "split.test_size"),
        ("nosuchsection.key=1", "nosuchsection"),
    ],
)
def test_bad_override_names_the_key(project_dir: Path, override: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(project_dir, [override])
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["split.test_size=1.5"], "split.test_size"),
        (["split.val_size=0"], "split.val_size"),
        (["main.env_manager=docker"], "main.env_manager"),
        (["artifacts.backend=s3"], "artifacts.backend"),
        (["+model.random_forest.n_estimatorz=3"], "n_estimatorz"),
        (["model.features.numeric=[island]"], "both numeric and categorical"),
        (["model.features.categorical=[species,sex]"], "target"),
        (["data.sha256=abc"], "data.sha256"),
        (["promote.alias=v3"], "alias"),
        (["test.model=../etc:prod"], "invalid artifact name"),
        (["model.task=regression", "model.estimator=logistic_regression"], "model.estimator"),
        (["model.estimator=ridge"], "model.estimator"),
        (["model.task=ranking"], "model.task"),
        (["data.max_bytes=0"], "data.max_bytes"),
        (["project=bad/name"], "project: invalid project name"),
        (["promote.baseline_margin=-0.1"], "promote.baseline_margin"),
        (["data_check.drift.max_psi=0"], "data_check.drift.max_psi"),
        (["model.features.max_dense_bytes=0"], "model.features.max_dense_bytes"),
        (["model.estimator=custom"], "model.custom._target_"),
        (["model.serialization=pickle"], "model.serialization"),
        (["model.features.imputation.numeric=zero"], "model.features.imputation.numeric"),
        (["model.features.categorical_encoding=target"], "model.features.categorical_encoding"),
        (["model.features.text.max_features=0"], "model.features.text.max_features"),
        (["model.features.text.columns=[sex]"], "both categorical and text"),
        (["model.features.numeric=[]", "model.features.categorical=[]"], "model.features lists no column"),
        (["+model.hist_gradient_boosting.n_estimators=5", "model.estimator=hist_gradient_boosting"], "n_estimators"),
    ],
)
def test_contradictory_or_invalid_values_fail_validation(project_dir: Path, overrides: list[str], named: str) -> None:
    cfg = resolve_paths(load_config(project_dir, overrides), project_dir)
    with pytest.raises(Exception) as error:
        validate(cfg)
    assert named in str(error.value)


def test_feature_lists_are_ignored_when_inferring(project_dir: Path) -> None:
    cfg = resolve_paths(
        load_config(
            project_dir, ["model.features.infer=true", "model.features.numeric=[]", "model.features.categorical=[]"]
        ),
        project_dir,
    )
    validate(cfg)
    assert cfg.model.features.infer is True


def test_stratification_follows_the_task() -> None:
    assert stratify_target("auto", "species", "classification") == "species"
    assert stratify_target("auto", "body_mass_g", "regression") is None
    assert stratify_target("island", "species", "regression") == "island"
    assert stratify_target(None, "species", "classification") is None


def test_any_random_forest_parameter_can_be_added(project_dir: Path) -> None:
    cfg = load_config(project_dir, ["+model.random_forest.max_samples=0.5", "model.random_forest.n_estimators=7"])
    validate(resolve_paths(cfg, project_dir))
    assert cfg.model.random_forest.max_samples == 0.5
    assert cfg.model.random_forest.n_estimators == 7


def test_trainflow_home_sets_the_store_root(project_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAINFLOW_HOME", str(tmp_path / "elsewhere"))
    cfg = resolve_paths(load_config(project_dir), project_dir)
    assert cfg.artifacts.root == str(tmp_path / "elsewhere")


def test_relative_paths_resolve_against_the_project(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINFLOW_HOME", raising=False)
    cfg = resolve_paths(load_config(project_dir, ["data.uri=data/penguins-raw.csv", "dataset=penguins"]), project_dir)
    assert cfg.artifacts.root == str(project_dir / ".trainflow")
    assert cfg.data.uri == str(project_dir / "data" / "penguins-raw.csv")


def test_remote_uris_are_left_alone(project_dir: Path) -> None:
    cfg = resolve_paths(load_config(project_dir, ["data.uri=http://127.0.0.1:9/x.csv", "data.target=y"]), project_dir)
    assert cfg.data.uri == "http://127.0.0.1:9/x.csv"


def test_select_steps_all_subset_and_order() -> None:
    assert select_steps("all") == [s for s in STEPS if s != "batch_predict"]  # optional steps run only when named
    assert select_steps("promote_model,batch_predict") == ["promote_model", "batch_predict"]
    assert select_steps("train_model,split_data") == ["split_data", "train_model"]
    assert select_steps(" test_model ") == ["test_model"]


@pytest.mark.parametrize("steps", ["bogus", "split_data,trian_model", "", ","])
def test_select_steps_rejects_unknown_or_empty(steps: str) -> None:
    with pytest.raises(ConfigError) as error:
        select_steps(steps)
    assert "fetch_data, check_data, split_data, train_model, test_model, promote_model" in str(error.value)


def test_mlproject_args_become_hydra_overrides() -> None:
    argv = ["main.py", "--steps", "split_data,train_model", "--hydra-options", "a.b=1  c.d='x y' -m"]
    assert expand_mlproject_args(argv) == ["main.py", "main.steps='split_data,train_model'", "a.b=1", "c.d=x y", "-m"]


def test_empty_hydra_options_add_nothing() -> None:
    assert expand_mlproject_args(["main.py", "--steps", "all", "--hydra-options", ""]) == [
        "main.py",
        "main.steps='all'",
    ]


def test_unbalanced_quotes_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="quotes"):
        split_overrides("data.uri='unterminated")


def test_flatten_uses_dotted_keys(project_dir: Path) -> None:
    flat = flatten(load_config(project_dir).model, "model.")
    assert flat["model.random_forest.n_estimators"] == 100
    assert flat["model.features.categorical"] == ["island", "sex"]


def test_component_mlprojects_match_the_step_table(project_dir: Path) -> None:
    """Each component declares exactly its inputs plus hydra_options, and passes each to run.py."""
    for name, spec in STEPS.items():
        mlproject = yaml.safe_load((project_dir / "components" / name / "MLproject").read_text())
        entry = mlproject["entry_points"]["main"]
        expected = [i.param for i in spec.inputs] + ["hydra_options"]
        assert list(entry["parameters"]) == expected, name
        for param in expected:
            assert f"--{param.replace('_', '-')} {{{param}}}" in entry["command"], (name, param)
        assert (project_dir / "components" / name / "run.py").is_file()


def test_unknown_step_fails_before_anything_runs(store_env: dict[str, str], project_dir: Path) -> None:
    result = run_command([sys.executable, "main.py", "main.steps='fetch_data,bogus'"], store_env)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "'bogus'" in line and "fetch_data, check_data, split_data" in line
    assert "[pipeline]" not in result.stdout
    assert not (Path(store_env["TRAINFLOW_HOME"]) / "index.db").exists(), "the store was touched"


@pytest.mark.parametrize(
    "override, named",
    [
        ("model.random_forest.n_estimatorz=3", "n_estimatorz"),
        # the steps as a list, the one override the up-front check once let through to Hydra
        ("main.steps=[fetch_data,check_data]", "main.steps='fetch_data,check_data'"),
        # values scikit-learn refuses, once a traceback inside train_model after the steps before it
        ("model.random_forest.n_estimators=abc", "model.random_forest.n_estimators='abc' is not valid"),
        ("model.random_forest.n_estimators=0", "n_estimators must be an int in the range [1, inf)"),
        # keys Hydra's + adds past the schema, once ignored: the whole pipeline ran
        ("+main.step=test_model", "unknown key main.step (did you mean main.steps?)"),
        ("+split.tst_size=0.3", "unknown key split.tst_size (did you mean split.test_size?)"),
        # a config group option that does not exist, once Hydra's dozen lines
        ("hydra/launcher=bogus", "hydra/launcher has no option 'bogus'; available: basic, joblib, ray"),
    ],
)
def test_bad_override_fails_in_one_line(store_env: dict[str, str], override: str, named: str) -> None:
    result = run_command([sys.executable, "main.py", override], store_env)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert named in line
    assert "Traceback" not in result.stderr
    assert "HYDRA_FULL_ERROR" not in result.stderr
    # at start: no step, no pipeline run, not even Hydra's run folder in the store
    assert "[pipeline]" not in result.stdout
    assert not (Path(store_env["TRAINFLOW_HOME"]) / "hydra").exists(), "Hydra started the run"


def test_bad_group_in_hydra_options_fails_in_one_line(store_env: dict[str, str]) -> None:
    """The same through `mlflow run . -P hydra_options=...`, which runs main.py with these arguments."""
    command = [sys.executable, "main.py", "--steps", "split_data", "--hydra-options", "hydra/launcher=joblb -m"]
    result = run_command(command, store_env)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert (
        "hydra/launcher has no option 'joblb'; did you mean hydra/launcher=joblib? available: basic, joblib, ray"
        in line
    )
    assert "Traceback" not in result.stderr and "HYDRA_FULL_ERROR" not in result.stderr


def test_bad_estimator_value_fails_in_one_line_in_a_component_run_alone(store_env: dict[str, str]) -> None:
    """`mlflow run components/train_model` runs run.py alone: it checks the values at its start,
    before it looks for its input (the store here is empty)."""
    command = [sys.executable, "components/train_model/run.py", "--hydra-options", "model.random_forest.n_estimators=0"]
    result = run_command(command, store_env)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("train_model: error: model.random_forest.n_estimators=0 is not valid")
    assert "Traceback" not in result.stderr


def test_a_gate_for_the_other_task_fails_before_anything_runs(store_env: dict[str, str]) -> None:
    """The penguins data set's gate bound (roc_auc_ovo) does not fit a regression task: one line
    before any step runs."""
    result = run_command(
        [
            sys.executable,
            "main.py",
            "dataset=penguins",
            "model.task=regression",
            "model.estimator=ridge",
            "data.target=body_mass_g",
            "model.features.numeric=[bill_length_mm]",
        ],
        store_env,
    )
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "roc_auc_ovo" in line and "promote.thresholds={}" in line
    assert "[pipeline] fetch_data" not in result.stdout


def test_main_help_is_the_pipelines_own(project_dir: Path) -> None:
    """`python main.py --help` answers from the step table and config.yaml: Hydra's help
    walked .venv/ and the store for minutes and listed installed packages' config folders."""
    result = subprocess.run(
        [sys.executable, "main.py", "--help"], cwd=project_dir, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for step in STEPS:
        assert f"\n  {step} " in text
    assert "reads model_export, test_data.parquet" in text and "logs trainval_data.parquet, test_data.parquet" in text
    assert "\n  dataset: penguins\n" in text and "\n  data.target        species\n" in text
    assert ".venv" not in text and "site-packages" not in text and "hydra/" not in text


def test_a_config_main_argv_validated_is_not_validated_again(
    project_dir: Path, store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """main_argv composes and validates the config before Hydra's app; the pipeline it
    starts validates only a config other than that one (a sweep's trial composes its own)."""
    from trainflow.pipeline import runner

    checked: list[object] = []
    monkeypatch.setattr(runner, "validate", lambda cfg, **_: checked.append(cfg))
    composed = load_config(project_dir, ["artifacts.backend=local"])
    runner.Pipeline(composed, project_dir, [], validated=resolve_paths(composed, project_dir))
    assert checked == []
    other = resolve_paths(load_config(project_dir, ["artifacts.backend=local", "split.test_size=0.3"]), project_dir)
    runner.Pipeline(composed, project_dir, [], validated=other)
    runner.Pipeline(composed, project_dir, [])
    assert len(checked) == 2
