"""Where the pipeline's components come from: a folder (the project's own ``components/``
by default) or a git repository at a pinned version, as ``main.components_repository`` and
``main.components_version`` say.

With a repository, ``mlflow.run`` clones it at the version for every step and runs
``<repository>#<folder>/<step>`` (the course template's ``components_repository``); the
step's MLflow run records the commit it ran (``mlflow.source.git.commit``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from trainflow.errors import ConfigError

# A URI with a scheme (https://, ssh://, git://, file://) or git's scp-like user@host:path.
_REPOSITORY_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[\w.-]+@[\w.-]+:")
# The components folder inside a repository named without '#<folder>': this project's layout.
DEFAULT_FOLDER = "components"
# Set by the pipeline for its steps: the folder whose config.yaml they compose (see pipeline.step_run).
CONFIG_DIR_ENV = "TRAINFLOW_CONFIG_DIR"


def is_repository_uri(location: str) -> bool:
    return bool(_REPOSITORY_URI.match(location))


@dataclass(frozen=True)
class ComponentSource:
    """``location`` is an absolute folder or a repository URI; ``version`` a git tag,
    branch or commit (repositories only; None: the repository's default branch)."""

    location: str
    version: str | None = None

    @property
    def is_repository(self) -> bool:
        return is_repository_uri(self.location)

    def uri(self, step: str) -> str:
        """What ``mlflow.run`` gets for ``step``."""
        if not self.is_repository:
            return str(Path(self.location) / step)
        repository, _, folder = self.location.partition("#")
        return f"{repository}#{folder.strip('/') or DEFAULT_FOLDER}/{step}"

    def check(self, steps: Iterable[str]) -> None:
        """Fail before anything runs on what can be known without fetching a repository."""
        if not self.is_repository:
            if self.version:
                raise ConfigError(
                    f"main.components_version={self.version!r} needs a git repository in "
                    f"main.components_repository, which is the folder {self.location}"
                )
            missing = [step for step in steps if not (Path(self.location) / step / "MLproject").is_file()]
            if missing:
                raise ConfigError(
                    f"no MLproject for step(s) {', '.join(missing)} under {self.location}: "
                    "check main.components_repository"
                )
            return
        parsed = urlparse(self.location.partition("#")[0])
        if parsed.scheme == "file" and self.version and Path(parsed.path).exists():
            # MLflow takes a file:// URI naming an existing folder for a local project and,
            # given a version, runs `git init` and a checkout inside it: in a bare
            # repository that adds a stray .git and fails with "couldn't find remote ref".
            raise ConfigError(
                f"main.components_repository={self.location!r}: MLflow cannot check out a version of a "
                "file:// URI naming an existing folder; name a bare repository without its .git suffix "
                f"(file://{parsed.path.removesuffix('.git')}, git finds the .git folder) or use a git://, "
                "ssh:// or https:// URI"
            )


def prepare_steps(project_dir: Path, env_manager: str) -> None:
    """Set what every step this process starts inherits through ``mlflow.run``.

    - The pipeline's project folder: steps compose its ``config.yaml`` and resolve relative
      paths against it, wherever their code comes from.
    - With uv: compile bytecode when the environment is built. uv does not by default (pip
      does), and where ``PYTHONDONTWRITEBYTECODE`` is set, as in many CI images, every step
      would compile all its imports again: 20-30 s a step instead of 5-10 s here.
    """
    os.environ[CONFIG_DIR_ENV] = str(project_dir)
    if env_manager == "uv":
        os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
