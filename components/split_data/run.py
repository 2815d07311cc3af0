"""split_data: split the raw table into ``trainval_data.parquet`` and ``test_data.parquet``,
recording the task (classification or regression) the target makes it."""

from trainflow.datacheck.report import refuse_failed_data
from trainflow.ml.data import require_columns, resolve_task, split_dataset, stratify_target, target_summary
from trainflow.pipeline.step_run import StepRun, step_main
from trainflow.store.records import NewVersion


def split_data(run: StepRun) -> None:
    raw_version = run.resolve("raw_artifact")
    refuse_failed_data(raw_version.metadata, raw_version.ref)
    cfg = run.cfg
    target = cfg.data.target
    # In a list so that the frame can be handed over (raw.pop()) with nothing else holding
    # it: split_dataset frees it once the parts are out.
    raw = [run.read_table("raw_artifact")]
    require_columns(raw[0], [target], "split_data")
    task, why = resolve_task(cfg.model.task, raw[0][target])
    run.say(f"task: {task} ({why})")
    stratify_by = stratify_target(cfg.split.stratify_by, target, task)
    trainval, test = split_dataset(
        raw.pop(), target, cfg.split.test_size, cfg.split.random_seed, stratify_by, classes=task == "classification"
    )
    run.say(f"{len(trainval) + len(test)} labelled rows -> trainval {len(trainval)}, test {len(test)}")
    run.log_metrics({"rows_trainval": len(trainval), "rows_test": len(test)})
    outputs = []
    for name, frame in (("trainval_data.parquet", trainval), ("test_data.parquet", test)):
        path = run.workdir / name
        frame.to_parquet(path, index=False)
        outputs.append(
            NewVersion(
                path,
                name,
                type="split_data",
                description=f"{name.split('_')[0]} rows of {run.used['raw_artifact'].ref}",
                metadata={"rows": len(frame), "target": target, "task": task, **target_summary(frame, target, task)},
            )
        )
    run.log_artifacts(outputs)  # both or neither: latest of the two always come from one split


if __name__ == "__main__":
    step_main("split_data", split_data, __file__)
