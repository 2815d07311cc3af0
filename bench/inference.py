"""Section 4 "Inference": the exported model as MLflow serves it, next to the fitted
pipeline it holds, in one run.

    python bench/inference.py [--smoke]

1. Batch: the same frame of 10^5 rows (smoke: 10^3) scored in this process by
   ``mlflow.pyfunc.load_model(<export>).predict`` (signature enforced) and by the fitted
   pipeline's ``predict_proba``, alternating, best of five (smoke: one) each. Target: the
   pyfunc model takes at most 1.2x the raw pipeline's time. The same for one row, to
   tell the model's share of a REST request from HTTP's and JSON's.
2. REST: ``mlflow models serve --env-manager local`` on a free loopback port; one
   keep-alive client sends 500 (smoke: 20) single-row ``dataframe_split`` requests
   (latency p50 and p99), then 20 (smoke: 3) 1,000-row batches (rows/s). The server's
   process group is stopped at the end, also on error.

The model: the project's configuration (``config.yaml``: estimator, its parameters,
preprocessing options, split) trained with ``train_from_config`` on a synthetic table
with every feature kind (numeric, categorical, free text, dates), so scoring runs every
transformer the exported pipeline can hold.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from report import BIN, PROJECT_DIR, Section, Target, machine, print_section, ratio, seconds
from support.processes import free_port, stop_process_group, wait_until_answering
from support.synthetic import TARGET, feature_spec_for_synthetic, make_table

from trainflow.config.schema import load_config
from trainflow.ml.train import TrainResult, export, train_from_config, validate_model_config

TARGET_RATIO = 1.2
TRAIN_SEED, SCORE_SEED = 0, 1


def sizes(smoke: bool) -> dict[str, int]:
    if smoke:
        return {
            "train_rows": 2_000,
            "batch_rows": 1_000,
            "repeats": 1,
            "mid_calls": 3,
            "single_calls": 20,
            "requests": 20,
            "rest_batch_rows": 100,
            "rest_batches": 3,
        }
    return {
        "train_rows": 20_000,
        "batch_rows": 100_000,
        "repeats": 5,
        "mid_calls": 50,
        "single_calls": 200,
        "requests": 500,
        "rest_batch_rows": 1_000,
        "rest_batches": 20,
    }


def synthetic_config_overrides() -> list[str]:
    """The project's config, pointed at the synthetic table's columns and target."""
    spec = feature_spec_for_synthetic()
    return [
        "data.uri=synthetic.csv",  # a table of its own: generic settings (the file is made in memory)
        f"data.target={TARGET}",
        "model.estimator=random_forest",  # the forest earlier runs measured
        "model.features.infer=false",
        f"model.features.numeric=[{','.join(spec.numeric)}]",
        f"model.features.categorical=[{','.join(spec.categorical)}]",
        f"model.features.text.columns=[{','.join(spec.text)}]",
        f"model.features.datetime=[{','.join(spec.datetime)}]",
    ]


def train_and_export(rows: int, path: Path) -> TrainResult:
    cfg = load_config(PROJECT_DIR, synthetic_config_overrides())
    validate_model_config(cfg.model, cfg.data.target)
    result = train_from_config(make_table(rows, seed=TRAIN_SEED), cfg)
    export(result, path, serialization=cfg.model.serialization)
    return result


def timings(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Each call timed ``repeats`` times, taking turns so that a change in the machine's load favours none."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            began = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - began)
    return times


def duration(value: float) -> str:
    return seconds(value) if value >= 1 else f"{value * 1000:.1f} ms"


def in_process(
    section: Section,
    pipeline: object,
    model: object,
    frame: pd.DataFrame,
    calls: int,
    summary: Callable[[list[float]], float],
) -> tuple[float, float]:
    """Time the raw pipeline and the pyfunc model on ``frame``, add a row each; their seconds per call."""
    times = timings({"raw": lambda: pipeline.predict_proba(frame), "pyfunc": lambda: model.predict(frame)}, calls)
    raw, served = summary(times["raw"]), summary(times["pyfunc"])
    rows = f"{len(frame):,}"
    section.add(
        "raw pipeline predict_proba, in process", rows, calls, duration(raw), per_second(len(frame), raw), ratio(1.0)
    )
    section.add(
        "pyfunc predict, in process", rows, calls, duration(served), per_second(len(frame), served), ratio(served / raw)
    )
    return raw, served


def per_second(rows: float, elapsed: float) -> str:
    return f"{rows / elapsed:,.0f}"


def split_payload(frame: pd.DataFrame) -> bytes:
    """The ``dataframe_split`` body a client sends: missing values as JSON null."""
    return ('{"dataframe_split": ' + frame.to_json(orient="split", index=False) + "}").encode()


class Client:
    """One keep-alive HTTP connection to the scoring server."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def invoke(self, body: bytes) -> list:  # type: ignore[type-arg]
        self.connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"/invocations answered {response.status}: {answer[:2000]!r}")
        return json.loads(answer)["predictions"]

    def close(self) -> None:
        self.connection.close()


def measure_rest(
    model_dir: Path, frame: pd.DataFrame, expected: pd.DataFrame, size: dict[str, int], work: Path
) -> dict[str, list[float]]:
    """Per-request seconds of single-row requests and of batches, from a served model."""
    port = free_port()
    log = work / "serve.log"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/ping", server, log)
        client = Client(port)
        try:
            singles = [split_payload(frame.iloc[[i % len(frame)]]) for i in range(size["requests"])]
            batch_rows = size["rest_batch_rows"]
            batches = [
                split_payload(frame.iloc[(i * batch_rows) % len(frame) :][:batch_rows])
                for i in range(size["rest_batches"])
            ]
            # The served answer is the in-process one, before anything is timed.
            answer = pd.DataFrame(client.invoke(batches[0]))
            if not np.allclose(answer.to_numpy(dtype="float64"), expected.head(len(answer)).to_numpy(dtype="float64")):
                raise RuntimeError("the served predictions differ from the in-process ones")
            for body in singles[:5]:  # warm-up
                client.invoke(body)
            result: dict[str, list[float]] = {"single": [], "batch": []}
            for kind, bodies in (("single", singles), ("batch", batches)):
                for body in bodies:
                    began = time.perf_counter()
                    client.invoke(body)
                    result[kind].append(time.perf_counter() - began)
            return result
        finally:
            client.close()
    finally:
        stop_process_group(server)


def measure(smoke: bool) -> Section:
    size = sizes(smoke)
    started_on = machine()
    section = Section(
        "4. Inference: the exported model (pyfunc, REST) vs. the fitted pipeline",
        ["path", "rows per call", "calls", "time per call", "rows/s", "vs. raw pipeline"],
    )
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        work = Path(tmp)
        model_dir = work / "model_export"
        result = train_and_export(size["train_rows"], model_dir)
        model = mlflow.pyfunc.load_model(str(model_dir))
        pipeline = result.pipeline
        frame = make_table(size["batch_rows"], seed=SCORE_SEED)[result.features.columns]
        expected = pipeline.predict_proba(frame)
        if not np.array_equal(np.asarray(model.predict(frame), dtype="float64"), np.asarray(expected, dtype="float64")):
            raise RuntimeError("pyfunc and the fitted pipeline disagree on the benchmark frame")

        best, median = min, statistics.median
        raw, served = in_process(section, pipeline, model, frame, size["repeats"], best)
        batch_rows = size["rest_batch_rows"]
        raw_batch, _ = in_process(section, pipeline, model, frame.head(batch_rows), size["mid_calls"], median)
        raw_one, _ = in_process(section, pipeline, model, frame.head(1), size["single_calls"], median)

        rest = measure_rest(model_dir, frame, expected, size, work)
        p50, p99 = (float(np.percentile(rest["single"], q)) for q in (50, 99))
        section.add(
            "REST /invocations p50", 1, len(rest["single"]), duration(p50), per_second(1, p50), ratio(p50 / raw_one)
        )
        section.add(
            "REST /invocations p99", 1, len(rest["single"]), duration(p99), per_second(1, p99), ratio(p99 / raw_one)
        )
        typical = median(rest["batch"])
        section.add(
            "REST /invocations batches",
            f"{batch_rows:,}",
            len(rest["batch"]),
            duration(typical),
            per_second(batch_rows * len(rest["batch"]), sum(rest["batch"])),
            ratio(typical / raw_batch),
        )

    section.targets.append(
        Target(
            "pyfunc batch scoring vs. the raw pipeline, same frame, same process",
            f"<= {TARGET_RATIO}x",
            ratio(served / raw),
            served / raw <= TARGET_RATIO,
        )
    )
    spec = result.features
    section.notes.extend(
        [
            f"Model: config.yaml's model section ({result.estimator}, {json.dumps(result.estimator_params)}) trained by "
            f"train_from_config on {size['train_rows']:,} synthetic rows (support.synthetic.make_table, seed "
            f"{TRAIN_SEED}) with {len(spec.numeric)} numeric, {len(spec.categorical)} categorical, {len(spec.text)} text "
            f"and {len(spec.datetime)} date column(s), about 5% missing values each; scored on other rows (seed "
            f"{SCORE_SEED}). Exported with trainflow.ml.train.export (skops, signature, code_paths).",
            f"In process: {size['batch_rows']:,} rows best of {size['repeats']} alternating runs each (the pyfunc "
            f"answer was checked equal to predict_proba's); {size['rest_batch_rows']:,} rows and one row, the median "
            f"of {size['mid_calls']} and {size['single_calls']} alternating calls each.",
            f"REST: mlflow models serve --env-manager local (one uvicorn worker) on 127.0.0.1, one keep-alive "
            f"http.client connection, JSON dataframe_split bodies serialised before timing. Single-row latency over "
            f"{len(rest['single'])} requests after 5 warm-up ones (p99 of {len(rest['single'])} is about its "
            f"{max(1, len(rest['single']) // 100)} slowest); batches: {len(rest['batch'])} requests of {batch_rows:,} "
            f"rows, median time per request, rows/s over all of them. 'vs. raw pipeline' for REST compares with the "
            f"in-process pipeline's median on the same number of rows.",
            started_on,
        ]
    )
    if smoke:
        section.notes.append("Smoke run: tiny sizes, one repeat; the figures mean nothing.")
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (checks that it runs)")
    args = parser.parse_args()
    print_section(measure(args.smoke))


if __name__ == "__main__":
    main()
