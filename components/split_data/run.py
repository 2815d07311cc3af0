"""split_data: split the raw table into ``trainval_data.parquet`` and ``test_data.parquet``."""

from trainflow.config import stratify_column
from trainflow.data import read_table, split_dataset, target_summary
from trainflow.datacheck import refuse_failed_data
from trainflow.run_context import StepRun, step_main


def split_data(run: StepRun) -> None:
    raw_version = run.resolve("raw_artifact")
    refuse_failed_data(raw_version.metadata, raw_version.ref)
    cfg = run.cfg
    # The raw frame is handed over, not kept: split_dataset frees it once the parts are out.
    trainval, test = split_dataset(
        read_table(run.store.use_artifact(raw_version.ref)), cfg.data.target, cfg.split.test_size,
        cfg.split.random_seed, stratify_column(cfg), classes=cfg.model.task == "classification",
    )
    run.say(f"{len(trainval) + len(test)} labelled rows -> trainval {len(trainval)}, test {len(test)}")
    run.log_metrics({"rows_trainval": len(trainval), "rows_test": len(test)})
    for name, frame in (("trainval_data.parquet", trainval), ("test_data.parquet", test)):
        path = run.workdir / name
        frame.to_parquet(path, index=False)
        run.log_artifact(
            path,
            name,
            type="split_data",
            description=f"{name.split('_')[0]} rows of {run.used['raw_artifact'].ref}",
            metadata={"rows": len(frame), "target": cfg.data.target, **target_summary(frame, cfg.data.target, cfg.model.task)},
        )


if __name__ == "__main__":
    step_main("split_data", split_data, __file__)
