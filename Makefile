# Two commands: `make run` runs the whole pipeline, `make test` runs the tests.
# Both create .venv and install the pinned dependencies first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# `make run` keeps the project's whole state (artifacts and MLflow runs) in one folder.
TRAINFLOW_HOME ?= $(CURDIR)/.trainflow
MLFLOW_TRACKING_URI ?= sqlite:///$(TRAINFLOW_HOME)/mlflow.db
RUN_ENV := TRAINFLOW_HOME="$(TRAINFLOW_HOME)" MLFLOW_TRACKING_URI="$(MLFLOW_TRACKING_URI)" PATH="$(CURDIR)/$(BIN):$$PATH"
# Two workers; a test file stays on one worker so module fixtures (one full pipeline) run once.
PYTEST_ARGS ?= -n 2 --dist loadfile
# The pyproject extras installed into .venv: `make test EXTRAS=dev,torch` adds torch, so
# the PyTorch demo's tests run instead of being skipped (CI runs `make test-torch`, which
# does this for the demo's tests only, last). The tests also install the boost extra
# (LightGBM, XGBoost: 30 MB), whose custom-estimator tests are skipped without it, and the
# team extra (PostgreSQL's driver, boto3, rclone: about 120 MB) for the team-server test, and
# the ray extra (Ray 2.60: about 250 MB) for the sweeps on a Ray cluster (tests/e2e/test_ray_sweeps.py).
EXTRAS ?= dev
TEST_EXTRAS ?= dev,boost,team,ray
# One stamp per extras set, so asking for other extras installs them; the stamp also
# depends on the pins, so changing either reinstalls.
comma := ,
INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: run test test-slow test-torch fuzz docs setup browser postgres team-server lock clean

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[$(EXTRAS)]"
	touch $@

# `trainflow init` makes the store's MLflow database and experiment (run artifacts inside
# the store); once the database exists there is nothing to make, so a re-run skips it.
run: setup
	@test -f "$(TRAINFLOW_HOME)/mlflow.db" || $(RUN_ENV) $(BIN)/trainflow init
	$(RUN_ENV) $(BIN)/mlflow run . --env-manager local --experiment-name trainflow

# The lint and format checks (ruff), the import contract (pyproject's [tool.importlinter]:
# layers import downward only), the type check of src/ (mypy), then the default suite:
# everything not marked slow, the whole pipeline through `mlflow run` included.
test:
	$(MAKE) setup EXTRAS=$(TEST_EXTRAS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Debian's Chromium and its driver for the slow MLflow UI test (tests/e2e/test_mlflow_ui.py),
# installed with apt-get (as root) only when either binary is missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# Debian's PostgreSQL for the team server (scripts/team_server.py, tests/e2e/test_team_server.py),
# installed with apt-get (as root) only when no initdb is found (Debian keeps it in
# /usr/lib/postgresql/<version>/bin, off PATH). Debian's own cluster ("main", port 5432) is not
# created: the drop-in below says so before the package's set-up runs; the script makes its own.
postgres:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		mkdir -p /etc/postgresql-common/createcluster.d && \
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/trainflow.conf && \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; \
	fi

# A team's tracking server on this host, in the foreground until Ctrl+C: PostgreSQL, an S3 server
# (rclone) and `mlflow server` with basic-auth, their state in TEAM_DIR (docs/team.md). Secrets
# come from the environment, or are generated into $(TEAM_DIR)/secrets.env; TEAM_ARGS adds
# options (e.g. TEAM_ARGS="--host 0.0.0.0 --port 5000").
TEAM_DIR ?= $(CURDIR)/.trainflow-team
TEAM_ARGS ?=
team-server: postgres
	$(MAKE) setup EXTRAS=team
	$(BIN)/python scripts/team_server.py "$(TEAM_DIR)" $(TEAM_ARGS)

# Long loops (fault injection, scale), the pipeline in isolated uv/virtualenv environments,
# MLflow's UI in a headless browser and the team server (PostgreSQL, S3, mlflow server); CI runs
# them before `make test`. Exit 5 means none exist yet.
test-slow: browser postgres
	$(MAKE) setup EXTRAS=$(TEST_EXTRAS)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Explore the front door with new random tables (CI's fuzz profiles are fixed); a failing
# example prints how to reproduce it. FUZZ_EXAMPLES=20000 make fuzz for a longer look.
FUZZ_EXAMPLES ?= 3000
fuzz:
	$(MAKE) setup EXTRAS=$(TEST_EXTRAS)
	TRAINFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -m slow -p no:xdist \
		tests/unit/test_fuzz_tables.py::test_any_table_file_ends_in_a_model_or_one_line_longer

# The PyTorch demo's tests with the torch extra installed. CI runs this last: once torch
# is installed, every process that imports skops.io also imports torch (through
# scikit-learn's array-API shim), about 1.5 s more per pipeline step.
test-torch:
	$(MAKE) setup EXTRAS=$(TEST_EXTRAS),torch
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest tests/e2e/test_demos.py $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/) with the pinned docs extra, built with --strict
# so that a broken link, anchor or API reference fails. The site goes to SITE_DIR, inside
# .venv and never committed; `.venv/bin/mkdocs serve` serves the pages while you edit them.
DOCS_EXTRAS ?= docs
SITE_DIR ?= $(VENV)/site
docs:
	$(MAKE) setup EXTRAS=$(DOCS_EXTRAS)
	$(BIN)/mkdocs build --strict --site-dir "$(SITE_DIR)"

# Re-resolve requirements.lock from pyproject.toml in a scratch environment, every extra
# included so that the lock pins torch's, the boosters', the docs tools', the team server's and
# Ray's dependencies too.
lock:
	rm -rf /tmp/trainflow-lock && $(PYTHON) -m venv /tmp/trainflow-lock
	/tmp/trainflow-lock/bin/python -m pip install --quiet --upgrade pip==26.3
	/tmp/trainflow-lock/bin/python -m pip install --quiet -e ".[dev,torch,boost,docs,team,ray]"
	/tmp/trainflow-lock/bin/python -m pip freeze --exclude-editable > requirements.lock

clean:
	rm -rf $(VENV) .trainflow
