"""fetch_data: copy or download the raw table, check it parses, log it as ``raw_data``."""

from trainflow.ml.data import fetch, read_table
from trainflow.pipeline.step_run import StepRun, step_main


def fetch_data(run: StepRun) -> None:
    data = run.cfg.data
    fetched = fetch(data.uri, run.workdir / "download", expected_sha256=data.sha256, max_bytes=data.max_bytes)
    table = read_table(fetched.path, limits=run.table_limits)
    for note in table.attrs["read_notes"]:
        run.say(note)
    run.say(f"fetched {fetched.source}: {len(table)} rows x {len(table.columns)} columns, sha256 {fetched.sha256}")
    run.log_artifact(
        fetched.path,
        "raw_data",
        type="raw_data",
        description=f"Raw table as fetched from {fetched.source}",
        metadata={
            "source": fetched.source,
            "sha256": fetched.sha256,
            "size": fetched.size,
            "rows": len(table),
            "columns": [str(c) for c in table.columns],
            **({"read_notes": table.attrs["read_notes"]} if table.attrs["read_notes"] else {}),
            # What the server said about this content (ETag, Last-Modified): data.cache_remote keys on them
            **({"http_validators": fetched.validators} if fetched.validators else {}),
        },
    )


if __name__ == "__main__":
    step_main("fetch_data", fetch_data, __file__)
