"""Any scikit-learn-compatible estimator, plugged in by import path with Hydra's _target_
(model.estimator=custom): it trains, exports with the types it needs trusted only when a
reviewed setting lists them, and reloads. LightGBM and XGBoost come from the pinned boost
extra (`make test` installs it); their tests are skipped without it."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from support.synthetic import HIGH_CARDINALITY, TARGET, make_table

from trainflow.config.schema import load_config
from trainflow.errors import ConfigError
from trainflow.ml.inference import load_exported
from trainflow.ml.train import export, train_from_config

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The reviewed lists of the boost extra's types (README: Your own data; the W&B-free
# reasoning is in trainflow.ml.train's SKOPS_TRUSTED_TYPES notes): the estimator classes and
# their Booster, which skops rebuilds from the model's own text or bytes; collections.OrderedDict
# is only named as the factory of LightGBM's best_score dictionary.
LIGHTGBM_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
]
XGBOOST_TYPES = ["xgboost.core.Booster", "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor"]


@pytest.fixture(autouse=True)
def restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a pyfunc model prepends its code directory to sys.path: undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table(1_500, n_classes=3, seed=11, high_cardinality=300)


def config(*overrides: str):  # type: ignore[no-untyped-def]
    named = ["data.uri=table.csv", f"data.target={TARGET}", "model.estimator=custom"]
    return load_config(PROJECT_DIR, [*named, *overrides])


def roundtrip(table: pd.DataFrame, tmp_path: Path, *overrides: str) -> tuple[object, Path]:
    cfg = config(*overrides)
    result = train_from_config(table, cfg)
    path = export(result, tmp_path / "model", trusted_types=list(cfg.model.trusted_types))
    return result, path


def test_a_scikit_learn_estimator_by_import_path_trains_exports_and_reloads(
    table: pd.DataFrame, tmp_path: Path
) -> None:
    result, path = roundtrip(
        table,
        tmp_path,
        "model.custom._target_=sklearn.ensemble.ExtraTreesClassifier",
        "+model.custom.n_estimators=25",
        "+model.custom.random_state=0",
    )
    assert result.estimator == "sklearn.ensemble._forest.ExtraTreesClassifier"
    assert result.estimator_params == {"n_estimators": 25, "random_state": 0}
    assert result.validation_metrics["roc_auc_ovo"] > 0.8
    # a tree ensemble by name: ordinal codes; the 300-level column target-encoded
    encodings = result.feature_table.set_index("column")["encoding"]
    assert encodings["color"].startswith("ordinal codes") and encodings[HIGH_CARDINALITY].startswith("target-encoded")
    rows = table.drop(columns=[TARGET]).head(50)
    served = mlflow.pyfunc.load_model(str(path)).predict(rows)
    np.testing.assert_array_equal(served.to_numpy(), result.pipeline.predict_proba(rows).to_numpy())
    assert load_exported(path).named_steps["model"].estimator_.n_estimators == 25


def test_an_unreviewed_type_is_refused_until_a_setting_trusts_it(table: pd.DataFrame, tmp_path: Path) -> None:
    """Never trusted silently: export names the type and the setting; listed, it exports and loads."""
    target = "model.custom._target_=support.custom_estimators.BalancedLogistic"
    with pytest.raises(ConfigError) as refused:
        roundtrip(table, tmp_path, target)
    message = str(refused.value)
    assert "['support.custom_estimators.BalancedLogistic']" in message and "model.trusted_types" in message
    assert not (tmp_path / "model").exists()  # nothing exported
    result, path = roundtrip(
        table, tmp_path, target, "model.trusted_types=[support.custom_estimators.BalancedLogistic]"
    )
    assert "support.custom_estimators.BalancedLogistic" in (path / "MLmodel").read_text()
    reloaded = load_exported(path)
    rows = table.drop(columns=[TARGET]).head(20)
    np.testing.assert_allclose(reloaded.predict_proba(rows).to_numpy(), result.pipeline.predict_proba(rows).to_numpy())


def test_a_custom_estimator_must_fit_the_task(table: pd.DataFrame) -> None:
    regression = table.assign(**{TARGET: np.arange(len(table), dtype=float) % 97 + 0.5})
    with pytest.raises(ConfigError, match="is not a regressor, and this is a regression task"):
        train_from_config(regression, config("model.custom._target_=sklearn.ensemble.ExtraTreesClassifier"))
    with pytest.raises(ConfigError, match="cannot be built"):
        train_from_config(table, config("model.custom._target_=sklearn.ensemble.NoSuchForest"))


@pytest.mark.parametrize(
    ("package", "estimator", "trusted", "distribution"),
    [
        ("lightgbm", "lightgbm.LGBMClassifier", LIGHTGBM_TYPES, "lightgbm"),
        ("xgboost", "xgboost.XGBClassifier", XGBOOST_TYPES, "xgboost-cpu"),
    ],
)
def test_boosters_from_the_extra_export_with_their_reviewed_types(
    table: pd.DataFrame, tmp_path: Path, package: str, estimator: str, trusted: list[str], distribution: str
) -> None:
    """String classes (XGBoost takes only codes: the pipeline gives it codes and answers in
    labels), a refused export without the reviewed list, a model that loads and pins its package."""
    pytest.importorskip(package)
    overrides = [f"model.custom._target_={estimator}", "+model.custom.n_estimators=30", "+model.custom.verbosity=0"]
    if package == "lightgbm":
        overrides[-1] = "+model.custom.verbose=-1"
    with pytest.raises(ConfigError, match=r"Booster"):
        roundtrip(table, tmp_path / "refused", *overrides)
    result, path = roundtrip(table, tmp_path, *overrides, f"model.trusted_types=[{','.join(trusted)}]")
    assert result.validation_metrics["roc_auc_ovo"] > 0.8
    rows = table.drop(columns=[TARGET]).head(40)
    served = mlflow.pyfunc.load_model(str(path)).predict(rows)
    assert list(served.columns) == ["class_0", "class_1", "class_2"]
    np.testing.assert_allclose(served.to_numpy(), result.pipeline.predict_proba(rows).to_numpy())
    assert set(result.pipeline.predict(rows)) <= {"class_0", "class_1", "class_2"}
    assert f"{distribution}==" in (path / "requirements.txt").read_text()
