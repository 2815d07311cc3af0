"""Both artifact backends serve every call of ``trainflow.store.protocol.ArtifactStore`` with
the protocol's parameters: names, kinds, defaults and types, compared with ``inspect`` on the
classes themselves (no store on disk, no W&B server)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from trainflow.store.local import LocalArtifactStore
from trainflow.store.protocol import ArtifactStore
from trainflow.store.records import ArtifactVersion
from trainflow.store.wandb_backend import WandbArtifactStore

MEMBERS = sorted(name for name, value in vars(ArtifactStore).items() if callable(value) and not name.startswith("_"))


def mismatches(cls: type) -> list[str]:
    """How ``cls`` departs from the protocol; empty when it serves every call as declared.

    A class may accept more than the protocol asks (a default where the protocol has none,
    ``X | None`` where it has ``X``): every call written against the protocol still works.
    """
    problems = []
    for name in MEMBERS:
        implementation = getattr(cls, name, None)
        if not callable(implementation):
            problems.append(f"{cls.__name__} has no {name}")
            continue
        wanted = inspect.signature(getattr(ArtifactStore, name), eval_str=True)
        found = inspect.signature(implementation, eval_str=True)
        if list(found.parameters) != list(wanted.parameters):
            problems.append(f"{cls.__name__}.{name}{found} takes other parameters than {name}{wanted}")
            continue
        for want, have in zip(wanted.parameters.values(), found.parameters.values(), strict=True):
            where = f"{cls.__name__}.{name}({want.name})"
            if have.kind != want.kind:
                problems.append(f"{where} is {have.kind.description}, not {want.kind.description}")
            if want.default is not inspect.Parameter.empty and have.default != want.default:
                problems.append(f"{where} defaults to {have.default!r}, not {want.default!r}")
            if have.annotation != want.annotation and have.annotation != want.annotation | None:
                problems.append(f"{where} is typed {have.annotation}, not {want.annotation}")
        if found.return_annotation != wanted.return_annotation:
            problems.append(f"{cls.__name__}.{name} returns {found.return_annotation}, not {wanted.return_annotation}")
    return problems


def test_the_protocol_holds_the_calls_steps_make() -> None:
    """What StepRun and the components call on ``run.store``, whichever backend it is."""
    assert {
        "get",
        "record_usage",
        "use_artifact",
        "log_artifacts",
        "update_metadata",
        "claim_alias",
        "record_promotion",
    } <= set(MEMBERS)


@pytest.mark.parametrize("backend", [LocalArtifactStore, WandbArtifactStore])
def test_each_backend_serves_every_call_of_the_protocol(backend: type) -> None:
    assert mismatches(backend) == []


class _RenamedParameter(LocalArtifactStore):
    def set_alias(self, ref: str, name: str, run_id: str | None = None) -> ArtifactVersion:  # type: ignore[override]
        raise NotImplementedError


class _OtherDefault(LocalArtifactStore):
    def log_artifact(
        self,
        path: Any,
        name: str,
        type: str,
        description: str = "?",
        metadata: Any = None,
        aliases: Any = (),
        run: Any = None,
    ) -> ArtifactVersion:
        raise NotImplementedError


class _NarrowerType(LocalArtifactStore):
    def use_artifact(self, ref: str, run: None = None) -> Any:  # type: ignore[override]
        raise NotImplementedError


@pytest.mark.parametrize(
    ("drifted", "found"),
    [
        (
            type("Partial", (), {name: getattr(LocalArtifactStore, name) for name in MEMBERS if name != "claim_alias"}),
            "Partial has no claim_alias",
        ),
        (_RenamedParameter, "_RenamedParameter.set_alias"),
        (_OtherDefault, "_OtherDefault.log_artifact(description) defaults to '?'"),
        (_NarrowerType, "_NarrowerType.use_artifact(run) is typed None"),
    ],
)
def test_the_check_finds_a_backend_that_drifted(drifted: type, found: str) -> None:
    assert any(problem.startswith(found) for problem in mismatches(drifted)), mismatches(drifted)
