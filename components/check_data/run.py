"""check_data: hold ``raw_data`` to the configured schema, generic and drift checks.

Logs the report (``data_check_report.json`` and ``.md``) to the MLflow run and to the
store as ``data_check_report``, pass or fail; on a failed check prints the table of
every failed check and exits 1, so ``split_data`` never sees the data.
"""

import pandas as pd

from trainflow.datacheck.checks import check_table
from trainflow.datacheck.report import DataCheckFailed, failure_hints, verdict_metadata
from trainflow.errors import ArtifactNotFound
from trainflow.ml.data import read_table, resolve_task
from trainflow.pipeline.step_run import StepRun, step_main
from trainflow.sections import section_dict
from trainflow.store.records import ArtifactVersion

REPORT = "data_check_report"


def reference_of(run: StepRun, alias: str) -> ArtifactVersion | None:
    try:
        return run.store.get(f"raw_data:{alias}")
    except ArtifactNotFound:
        return None


def check_data(run: StepRun) -> None:
    import mlflow

    cfg = run.cfg
    settings = section_dict(cfg.data_check)
    alias = settings["reference_alias"]
    frame = run.read_table("raw_artifact")
    checked = run.used["raw_artifact"]

    reference_version = reference_of(run, alias)
    reference = None
    if reference_version is None:
        note = f"no raw_data:{alias} yet: drift not checked; {checked.ref} becomes raw_data:{alias} if it passes"
    elif reference_version.ref == checked.ref:
        note = f"{checked.ref} is raw_data:{alias} itself: drift not checked"
    else:
        reference = read_table(run.store.use_artifact(reference_version.ref, run=run.record), limits=run.table_limits)
        mlflow.set_tag("trainflow.reference", reference_version.ref)
        note = f"drift measured against {reference_version.ref} (raw_data:{alias}, {len(reference):,} rows)"
    run.say(note)

    target = cfg.data.target
    # Without the target column the task cannot be told; the generic check target_present says so.
    task, why = resolve_task(cfg.model.task, frame[target]) if target in frame.columns else (cfg.model.task, "")
    reference_name = reference_version.ref if reference is not None else None
    report = check_table(frame, target, task, settings, reference, reference_name)
    report.notes.insert(0, note)
    if why:
        report.notes.insert(1, f"task: {task} ({why})")
    failed, warnings = report.failed(), report.warnings()
    became_reference = False
    if not failed and reference_version is None:
        _, became_reference = run.store.claim_alias(checked.ref, alias, run_id=run.run_id)

    folder = run.workdir / REPORT
    folder.mkdir()
    (folder / f"{REPORT}.json").write_text(report.to_json())
    (folder / f"{REPORT}.md").write_text(report.to_markdown(title=f"Data check report: {checked.ref}"))
    mlflow.log_artifacts(str(folder))
    run.log_metrics(report.metrics(), show=False)
    run.log_table(pd.DataFrame(report.to_dict()["checks"]), "data_checks.json")  # one row a check; a W&B table too
    mlflow.set_tag("trainflow.data_check", "failed" if failed else "passed")
    version = run.log_artifact(
        folder,
        REPORT,
        type="data_check",
        description=f"Data check report on {checked.ref}: {'FAILED' if failed else 'passed'}",
        metadata={
            "raw_data": checked.ref,
            "reference": report.reference,
            "passed": not failed,
            "checks": len(report.results),
            "failed": [r.key for r in failed],
            "warnings": [r.key for r in warnings],
            "drift": {k: v for k, v in report.drift.items() if k != "statement"},
            "became_reference": became_reference,
        },
    )
    # split_data refuses a raw_data version recorded as failed, however it is asked for
    run.store.update_metadata(checked.ref, verdict_metadata(not failed, version.ref, run.run_id))
    if warnings:
        run.say(f"{len(warnings)} warning(s) (not stopping the pipeline):\n{report.table(warnings)}")
    if failed:
        run.warn(f"{len(failed)} failed check(s), stopping before split_data:\n{report.table(failed)}")
        raise DataCheckFailed(
            f"{report.summary()} on {checked.ref}; the report is {version.ref} "
            f"(`trainflow artifacts get {version.ref} DIR`): fix the data or data_check in config.yaml, "
            f"or let a group only warn with data_check.fail_on.<group>=warn"
            + "".join(f"; {hint}" for hint in failure_hints(failed, frame, cfg.data.target, checked.ref))
        )
    run.say(
        f"passed: {len(report.results)} checks, {len(warnings)} warning(s)"
        + (f"; {checked.ref} is now raw_data:{alias}" if became_reference else "")
    )


if __name__ == "__main__":
    step_main("check_data", check_data, __file__)
