"""MLflow's UI in a real browser, on the store one whole pipeline filled: `mlflow run .`,
then `mlflow ui` on the store's database on 127.0.0.1, read with headless Chromium driven
by Selenium (Debian's chromium and chromium-driver: `make browser` installs them).

The tests look for what a user looks for: the experiment's training runs, the pipeline's
run and its step runs, the tables the steps read (MLflow datasets), the trained model with
its test metrics. They wait for visible texts (the UI is a React app) and save a
screenshot of each view they check in .test-artifacts/mlflow-ui/, printing its path.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.entities import Run
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from support.processes import free_port, stop_process_group, wait_until_answering
from support.project import BIN_DIR, MLFLOW, PENGUINS_PROJECT, PROJECT_DIR, pipeline_env, run_command

from trainflow.pipeline.steps import select_steps

# A whole pipeline, a tracking server and a browser: about 45 s.
pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# As root, offline, nothing kept between runs (a new --user-data-dir each time).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1920,1200",
    "--lang=en-US",
)
# Kept after the run for a human to look at (ignored by git); emptied when the module starts.
SHOTS = PROJECT_DIR / ".test-artifacts" / "mlflow-ui"
WAIT = 60  # seconds for a view to show what it should: a React app, on 2 shared cores
RUN_NAME_HEADER = "//*[@role='columnheader'][normalize-space()='Run Name']"


class OpensOnGenAI(AssertionError):
    """The experiment opened on MLflow's GenAI views instead of its training runs."""


@dataclass
class UI:
    """`mlflow ui` on a finished pipeline's store, a browser on it and what MLflow's API says it holds."""

    url: str
    driver: webdriver.Chrome
    client: mlflow.MlflowClient
    experiment_id: str
    runs: dict[str, Run]  # by step; the pipeline's own run is "pipeline"
    printed_route: str  # the UI's address of the training runs the pipeline printed, after the server's URL

    def visible(self, xpath: str, what: str) -> WebElement:
        """The first element ``xpath`` finds once it is visible; fail naming ``what`` if none is within WAIT."""
        try:
            return WebDriverWait(self.driver, WAIT).until(
                expected_conditions.visibility_of_element_located((By.XPATH, xpath))
            )
        except TimeoutException:
            raise AssertionError(f"MLflow's UI did not show {what} within {WAIT} s{self.failed()}") from None

    def click(self, xpath: str, what: str) -> None:
        """Click ``what`` once it is visible. A tip the app put over the page (a modal dialog
        such as "Detect Issues in Your Traces") is closed first, as a user would close it."""
        self.visible(xpath, what)
        tips = "//*[@role='dialog']//button[normalize-space()='Got it' or starts-with(@aria-label, 'Close')]"

        def clicked() -> bool:
            for tip in self.driver.find_elements(By.XPATH, tips):
                if tip.is_displayed():
                    tip.click()
            self.driver.find_element(By.XPATH, xpath).click()
            return True

        # The app re-renders as it loads: an element found a moment ago may be gone or covered.
        retried = (ElementClickInterceptedException, StaleElementReferenceException, NoSuchElementException)
        try:
            WebDriverWait(self.driver, WAIT, ignored_exceptions=retried).until(lambda _: clicked())
        except TimeoutException:
            raise AssertionError(f"{what} could not be clicked within {WAIT} s{self.failed()}") from None

    def until(self, condition: Callable[[], Any], what: str) -> Any:
        """``condition()`` once it is true; fail saying ``what`` did not happen if it is not within WAIT."""
        try:
            return WebDriverWait(self.driver, WAIT).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"{what} within {WAIT} s{self.failed()}") from None

    def failed(self) -> str:
        return f" at {self.driver.current_url} (screenshot: {self.screenshot('failed')})"

    def screenshot(self, name: str) -> Path:
        """A PNG of the whole page; its path is printed. The app scrolls inside its panes, so
        the page is the window, unless it grew past it: only then is Chrome asked to capture
        beyond the viewport (which resizes it for a moment, and makes the app render anew)."""
        layout = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        page, window = layout["cssContentSize"], layout["cssLayoutViewport"]
        path = SHOTS / f"{name}.png"
        if page["width"] > window["clientWidth"] or page["height"] > window["clientHeight"]:
            clip = {"x": 0, "y": 0, "width": page["width"], "height": page["height"], "scale": 1}
            png = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
            )
            path.write_bytes(base64.b64decode(png["data"]))
        else:
            self.driver.save_screenshot(str(path))
        print(f"MLflow UI screenshot: {path}")
        return path

    def open(self, route: str) -> None:
        """Load the app afresh at ``route`` (``#/...``) as a browser new to it would: the app
        keeps its choices in the origin's local storage, which is emptied first, so that no
        test sees what an earlier one chose (the sidebar's switch, rows expanded, panels)."""
        self.driver.get(f"{self.url}/health")  # the app's origin, outside the app
        self.driver.execute_script("window.localStorage.clear()")
        self.driver.get(f"{self.url}/{route}")
        self.visible("//a[normalize-space()='Experiments']", "its navigation")

    def close_assistant(self) -> None:
        """Close the "MLflow Assistant" side panel, which opens by itself on a first visit and narrows the page."""
        close = "//*[text()[normalize-space()='MLflow Assistant']]/ancestor::*[.//button[@aria-label='Close']][1]"
        for button in self.driver.find_elements(By.XPATH, close + "//button[@aria-label='Close']"):
            if button.is_displayed():
                button.click()

    def experiment_tab(self) -> str:
        """The tab of the experiment's page the app shows (``runs``, ``models``, ``overview``, ``traces``, ...)."""
        match = re.search(rf"#/experiments/{self.experiment_id}/([\w-]+)", self.driver.current_url)
        return match.group(1) if match else ""

    def training_runs(self) -> None:
        """The experiment's runs table as a user reaches it: open the experiment and, when
        the app shows its GenAI views, switch the sidebar to "Model training"."""
        self.open(f"#/experiments/{self.experiment_id}")
        self.until(self.experiment_tab, "the experiment's page opened no tab")
        if self.experiment_tab() != "runs":
            switch = "//*[@role='button'][normalize-space()='Model training']"
            self.click(switch, "the sidebar's 'Model training' switch")
        self.visible(RUN_NAME_HEADER, "the runs table")
        self.close_assistant()

    def run_link(self, step: str) -> str:
        return f"//a[normalize-space()='{self.runs[step].info.run_name}']"

    def run_row(self, step: str) -> str:
        """A step's run in the runs table (its row is split between the grid's pinned and scrolled parts)."""
        return f"//*[@role='row'][@row-id='{self.runs[step].info.run_id}']"


@contextlib.contextmanager
def mlflow_ui(home: Path, env: dict[str, str], folder: Path) -> Iterator[str]:
    """`mlflow ui` on the store's database and artifacts, on a free loopback port; its URL."""
    port = free_port()
    command = [
        MLFLOW,
        "ui",
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = folder / "mlflow-ui.log"
    with log.open("wb") as output:
        # Its own process group (its workers stop with it) and folder (it writes nothing in the project's).
        server = subprocess.Popen(
            command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answering(f"{url}/health", server, log)
        yield url
    finally:
        stop_process_group(server)


def chromium(folder: Path) -> webdriver.Chrome:
    """Debian's headless Chromium with a new profile, through Debian's chromedriver (given
    by path, so Selenium Manager, which would download a driver, never runs)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={folder / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(folder / "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    """One pipeline on the default data, then `mlflow ui` on its store and a browser (tests
    ask for it through :func:`browser_ui`)."""
    folder = tmp_path_factory.mktemp("mlflow-ui")
    home = folder / "home"
    env = pipeline_env(home)
    init = run_command([str(BIN_DIR / "trainflow"), "init"], env)
    assert init.returncode == 0, init.stderr
    result = run_command([MLFLOW, "run", ".", "--env-manager", "local", "--experiment-name", "trainflow"], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("trainflow")
    runs = {run.data.tags["trainflow.step"]: run for run in client.search_runs([experiment.experiment_id])}
    printed = re.search(r"^  MLflow UI: http://127\.0\.0\.1:5000/(\S+) \(after: mlflow ui", result.stdout, re.MULTILINE)
    assert printed, result.stdout[-3000:]
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with (
        pytest.MonkeyPatch.context() as patch,
        mlflow_ui(home, {**env, "MLFLOW_DISABLE_TELEMETRY": "true"}, folder) as url,
    ):
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should anything call it: no download
        driver = chromium(folder)
        try:
            yield UI(url, driver, client, experiment.experiment_id, runs, printed.group(1))
        finally:
            driver.quit()


def browser_ui(request: pytest.FixtureRequest) -> UI:
    """The ``ui`` fixture, once the browser is known to be there: a test fails at once with
    one line when it is not (from a fixture it would be an error, and after the pipeline)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"{' and '.join(missing)} missing: run `make browser` (Debian's chromium and chromium-driver)"
        pytest.fail(message, pytrace=False)
    return request.getfixturevalue("ui")


@pytest.mark.xfail(
    raises=OpensOnGenAI,
    strict=True,
    reason="MLflow 3.17.2's UI ignores the experiment's mlflow.experimentKind tag: a browser that has "
    "not chosen 'Model training' in the sidebar opens every experiment on its GenAI overview",
)
def test_the_experiment_opens_on_its_training_runs(request: pytest.FixtureRequest) -> None:
    """A browser new to this UI opens the experiment, which trainflow tags as model
    training, on its runs table."""
    ui = browser_ui(request)
    assert ui.client.get_experiment(ui.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    ui.open(f"#/experiments/{ui.experiment_id}")
    ui.until(ui.experiment_tab, "the experiment's page opened no tab")
    ui.visible(f"{RUN_NAME_HEADER}|//h3[not(ancestor::*[@role='dialog'])]", "the tab's content")
    ui.screenshot("1-experiment-as-opened")
    if ui.experiment_tab() != "runs":
        raise OpensOnGenAI(f"the experiment opened on {ui.experiment_tab()!r}: {ui.driver.current_url}")
    ui.visible(RUN_NAME_HEADER, "the runs table")


def test_the_address_the_pipeline_prints_opens_the_training_runs(request: pytest.FixtureRequest) -> None:
    """The pipeline's closing lines name the experiment's training runs in MLflow's UI: a
    browser new to the UI lands on the runs table there, not on the GenAI overview."""
    ui = browser_ui(request)
    assert ui.printed_route == f"#/experiments/{ui.experiment_id}/runs?workflowType=machine_learning"
    ui.open(ui.printed_route)
    ui.visible(RUN_NAME_HEADER, "the runs table")
    assert ui.experiment_tab() == "runs"
    ui.visible(ui.run_row("pipeline") + ui.run_link("pipeline"), "the pipeline's run")
    ui.screenshot("1-experiment-from-the-printed-address")


def test_the_runs_table_shows_the_pipeline_run_its_step_runs_and_their_datasets(request: pytest.FixtureRequest) -> None:
    ui = browser_ui(request)
    steps = select_steps("all")
    assert set(ui.runs) == {"pipeline", *steps}
    ui.training_runs()
    # The step runs are nested under the pipeline's run: listed once it is expanded.
    ui.visible(ui.run_row("pipeline") + ui.run_link("pipeline"), "the pipeline's run")
    assert not ui.driver.find_elements(By.XPATH, ui.run_link("train_model")), "step runs listed beside the pipeline's"
    name_cell = f"{ui.run_row('pipeline')}//*[@role='gridcell'][.{ui.run_link('pipeline')}]"
    ui.click(f"{name_cell}//button", "the pipeline run's expander")
    for step in steps:
        ui.visible(ui.run_row(step) + ui.run_link(step), f"the step run {step!r}")

    # Every table a step read is in its row's Dataset column.
    read = {step: [i.dataset.name for i in run.inputs.dataset_inputs] for step, run in ui.runs.items() if run.inputs}
    read = {step: names for step, names in read.items() if names}
    assert {"train_model", "test_model"} <= set(read), f"steps with MLflow dataset inputs: {read}"
    for step, names in read.items():
        for name in names:
            ui.visible(f"{ui.run_row(step)}//*[@role='gridcell'][contains(., '{name}')]", f"{step}'s dataset {name}")
    ui.screenshot("2-runs-table")


def test_the_run_pages_show_the_step_runs_and_a_dataset(request: pytest.FixtureRequest) -> None:
    ui = browser_ui(request)
    ui.training_runs()
    pipeline = ui.runs["pipeline"].info.run_name
    ui.click(ui.run_link("pipeline"), "the pipeline's run")
    ui.visible(f"//h2[normalize-space()='{pipeline}']", "the pipeline's run page")
    child_runs = "//*[text()[normalize-space()='Child runs']]/following-sibling::*"
    ui.visible(child_runs, "its 'Child runs'")
    for step in select_steps("all"):
        ui.visible(child_runs + ui.run_link(step), f"the child run {step!r}")
    ui.screenshot("3-pipeline-run")

    ui.click(child_runs + ui.run_link("train_model"), "the child run 'train_model'")
    ui.visible("//h2[normalize-space()='train_model']", "train_model's run page")
    ui.visible("//h4[normalize-space()='Datasets']", "its 'Datasets'")
    (used,) = ui.runs["train_model"].inputs.dataset_inputs
    context = {tag.key: tag.value for tag in used.tags}["mlflow.data.context"]
    dataset = f"//*[normalize-space()='{used.dataset.name} ({used.dataset.digest})']"
    ui.visible(dataset, f"its dataset {used.dataset.name}")
    ui.visible(
        f"{dataset}/following-sibling::*[@role='status'][normalize-space()='{context}']", f"its context {context}"
    )
    ui.screenshot("4-train_model-run")


def shown(value: float) -> str:
    """A metric's value as the app prints it (JavaScript's shortest form: 1, not 1.0)."""
    return str(int(value)) if value.is_integer() else repr(value)


def test_the_models_tab_shows_the_model_with_its_test_metrics(request: pytest.FixtureRequest) -> None:
    ui = browser_ui(request)
    models = ui.client.search_logged_models([ui.experiment_id])
    assert models, "no MLflow LoggedModel in the experiment: train_model logs none"
    model = next((m for m in models if m.name == PENGUINS_PROJECT), None)
    assert model is not None, f"no LoggedModel named after the project {PENGUINS_PROJECT!r}: {[m.name for m in models]}"
    test_metrics = {metric.key: metric for metric in model.metrics or [] if metric.key.startswith("test_")}
    assert test_metrics, f"no test_ metric on the model {model.model_id}: {[m.key for m in model.metrics or []]}"
    first = test_metrics[min(test_metrics)]

    ui.training_runs()
    ui.click("//a[normalize-space()='Models']", "the 'Models' tab")
    ui.visible("//*[@role='columnheader'][normalize-space()='Model name']", "the models table")
    row = f"//*[@role='row'][@row-id='{model.model_id}']"
    link = f"{row}//a[normalize-space()='{PENGUINS_PROJECT}']"
    ui.visible(link, f"the model {PENGUINS_PROJECT!r}")
    # Its metric columns are grouped under the dataset they were measured on.
    ui.visible(f"//*[@role='columnheader'][contains(., '{first.dataset_name}')]", f"the test set {first.dataset_name}")
    ui.visible(f"//*[@role='columnheader'][normalize-space()='{first.key}']", f"the column {first.key}")
    ui.visible(f"{row}//*[@role='gridcell'][normalize-space()='{shown(first.value)}']", f"its {first.key}")
    ui.screenshot("5-models-tab")

    ui.click(link, "the model's link")
    ui.visible(f"//h2[normalize-space()='{PENGUINS_PROJECT}']", "the model's page")
    ui.visible("//input[@placeholder='Search metrics']", "its metrics' search box").send_keys("test_")
    for key, metric in sorted(test_metrics.items()):
        value = shown(metric.value)
        ui.visible(
            f"//*[@role='row'][*[@role='cell'][normalize-space()='{key}']]"
            f"[*[@role='cell'][contains(normalize-space(), '{metric.dataset_name}')]]"
            f"[*[@role='cell'][normalize-space()='{value}']]",
            f"the row {key} | {metric.dataset_name} | {value}",
        )
    ui.screenshot("6-model-page")
