"""Keys the schema does not have (Hydra's ``+``) and config group overrides: fast, no runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainflow.config.schema import (
    check_config_groups,
    is_group_override,
    load_config,
    resolve_paths,
    sets_estimator_params,
    validate,
)
from trainflow.errors import ConfigError

PLUS_HINT = "a + override only adds keys trainflow does not read"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+main.step=test_model"], "unknown key main.step (did you mean main.steps?)"),
        (
            ["main.steps='split_data'", "+split.tst_size=0.3"],
            "unknown key split.tst_size (did you mean split.test_size?)",
        ),
        # no close match: the section's keys instead
        (["+split.zzz=1"], "unknown key split.zzz (split has test_size, val_size, random_seed, stratify_by)"),
        (["+nosuchsection=1"], "unknown key nosuchsection (the sections are project, main, artifacts,"),
        # nested sections, and one inside an Optional[...] dataclass field
        (["+model.features.text.max_feature=5"], "unknown key model.features.text.max_feature (did you mean"),
        (["+data_check.expectations.row_count.mean=3"], "unknown key data_check.expectations.row_count.mean"),
        (["+data_check.drift.alpah=0.1"], "did you mean data_check.drift.alpha?"),
    ],
)
def test_a_key_the_schema_lacks_is_refused(project_dir: Path, overrides: list[str], message: str) -> None:
    cfg = resolve_paths(load_config(project_dir, overrides), project_dir)  # rebuilt from a plain container
    with pytest.raises(ConfigError) as error:
        validate(cfg, estimator_params=False)
    assert message in str(error.value)
    assert PLUS_HINT in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        # fields typed as a mapping are open: estimator parameters, gates, column expectations
        ["+model.random_forest.max_samples=0.5"],
        ["+model.ridge.fit_intercept=false"],
        ["+promote.thresholds.accuracy=0.9"],
        ["+data_check.expectations.columns.tag={dtype:str}"],
        # an Optional section set to null has no keys to check
        ["data_check.expectations=null"],
    ],
)
def test_open_sections_take_new_keys(project_dir: Path, overrides: list[str]) -> None:
    """The positive control: what config.yaml and the docs say can be added with + passes."""
    validate(resolve_paths(load_config(project_dir, overrides), project_dir))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra/launcher=bogus", "hydra/launcher has no option 'bogus'; available: basic, joblib, ray"),
        ("hydra/launcher=joblb", "did you mean hydra/launcher=joblib? available: basic, joblib, ray"),
        ("hydra/launcher=basic,bogus", "hydra/launcher has no option 'bogus'"),  # a sweep over launchers
        ("hydra/launchr=joblib", "there is no config group hydra/launchr; did you mean hydra/launcher?"),
        ("hydra/launcher=[", "bad configuration override 'hydra/launcher=['"),
        (
            "+hydra/launcher=joblib",
            "hydra/launcher already has a value, so '+' cannot add one; drop the '+': hydra/launcher=joblib",
        ),
    ],
)
def test_a_config_group_option_that_does_not_exist_is_one_line(project_dir: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_config_groups(project_dir, [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["hydra/launcher=joblib"],
        ["hydra/launcher=basic"],
        ["hydra/launcher=basic,joblib"],
        ["hydra/job_logging=disabled"],
    ],
)
def test_existing_config_group_options_pass(project_dir: Path, overrides: list[str]) -> None:
    """The positive control: sweeps use hydra/launcher=joblib, from the joblib plugin."""
    assert check_config_groups(project_dir, overrides) is None


@pytest.mark.parametrize(
    ("argument", "is_group"),
    [
        ("hydra/launcher=joblib", True),
        ("+hydra/launcher=joblib", True),
        ("hydra/launcher@hydra.launcher=joblib", True),
        ("model.random_forest.n_estimators=5", False),
        ("data.uri=https://example.com/a/b.csv", False),  # a / in the value, not the key
        ("hydra.launcher.n_jobs=2", False),
        ("some/dir", False),  # the value of a flag such as --config-dir
    ],
)
def test_group_overrides_are_told_from_keys(argument: str, is_group: bool) -> None:
    assert is_group_override(argument) is is_group


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.random_forest.n_estimators=0"], True),
        (["+model.ridge.alpha=2"], True),
        (["model.hist_gradient_boosting={max_iter: 5}"], True),
        (["model.estimator=ridge", "model.features.infer=true", "model.task=regression"], False),
        (["data.uri=x.csv", "main.steps='train_model'"], False),
    ],
)
def test_only_estimator_parameter_overrides_need_the_up_front_scikit_learn_check(
    overrides: list[str], expected: bool
) -> None:
    assert sets_estimator_params(overrides) is expected


def readme_hydra_options(readme: str) -> list[str]:
    """Every ``-P hydra_options="..."`` in the README's code blocks, as bash hands it to
    MLflow: line continuations joined, ``\\"`` and the like unescaped."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", readme, re.DOTALL):
        for match in re.finditer(r'hydra_options="((?:[^"\\]|\\.)*)"', block.replace("\\\n", "")):
            found.append(re.sub(r'\\(["\\$`])', r"\1", match.group(1)))
    return found


def test_every_hydra_options_example_in_the_readme_composes(project_dir: Path) -> None:
    """The examples of the README and the docs site's pages (docs/, where most of them now
    live) go through the same split as `mlflow run -P hydra_options=...`
    and compose against config.yaml (a sweep's overrides must parse), so an example with
    quoting the split removes, or a key the schema lacks, fails here and not for a reader."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from trainflow.pipeline.runner import expand_mlproject_args

    pages = [project_dir / "README.md", *sorted((project_dir / "docs").rglob("*.md"))]
    examples = [example for page in pages for example in readme_hydra_options(page.read_text())]
    assert len(examples) >= 10, examples  # the extraction itself still finds the examples
    for options in examples:
        arguments = expand_mlproject_args(["main.py", "--steps", "all", "--hydra-options", options])[1:]
        if "-m" in arguments:
            OverridesParser.create().parse_overrides([a for a in arguments if a != "-m"])
        else:
            validate(resolve_paths(load_config(project_dir, arguments), project_dir))
