"""A campaign's rows as tasks: one row in this run (``make-recipient``), a batch of rows as a child
run on the CPU pool (``make-batch-on-pool``), and the fan-out of a plan over them.

Locally each row is a ``make-recipient`` task running ``loom.pipeline.run_recipient`` with the
task steps (network steps as tasks, the local ones as plain calls), ``concurrency`` rows at a time
on threads: a flow run per row would cost about a second each (its API calls, and the flow
engine's heartbeat thread, joined at the end of every run), which on a small recording is more
than the recipient itself. ``flow_run_per_row`` brings that back for those who want a run per
recipient in the UI; ``workers="processes"`` runs rows in worker processes instead (each pays its
own start-up; worth it only for long recordings whose Python-side steps hold the GIL).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.deployments import run_deployment
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from blocks import apply_configured_blocks
from loom import pipeline
from loom.campaign import CampaignEntry, CampaignPlan, failure_line, read_manifest_rows
from loom.prepared import PreparedTemplate
from tasks.recipient_steps import TaskSteps

CAMPAIGN_DEPLOYMENT = "campaign/campaign"


class RowOutcome(BaseModel):
    number: int
    status: str
    error: str = ""
    seconds: float = 0.0
    share_url: str = ""


@task(name="make-recipient", task_run_name="row-{number}")
def make_recipient(
    template: str, prepared: PreparedTemplate, number: int, values: dict[str, str], output_uri: str, flow_run_per_row: bool = False
) -> RowOutcome:
    """One row: the recipient's steps as tasks of this campaign run (or, with ``flow_run_per_row``, as
    a ``personalize-recipient`` subflow run). Its failure is recorded, never raised."""
    from flows.recipient import personalize_recipient  # tasks sit below flows: the flow is called, not imported at load

    started = time.perf_counter()
    try:
        if flow_run_per_row:
            result = personalize_recipient(template=template, data=values, output=output_uri)
        else:
            apply_configured_blocks()  # a worker process of the pool starts without the parent's settings
            job = pipeline.plan_recipient(prepared.template, prepared, values, output_uri)
            result = pipeline.run_recipient(job, TaskSteps(parallel=False))
    except Exception as exc:  # one recipient's failure never stops the others
        get_run_logger().warning("row %s failed: %s", number, failure_line(exc))
        return RowOutcome(number=number, status="failed", error=failure_line(exc), seconds=time.perf_counter() - started)
    return RowOutcome(number=number, status="done", seconds=time.perf_counter() - started, share_url=result.links.get("share", ""))


def make_rows(
    plan: CampaignPlan, template: str, prepared: PreparedTemplate, concurrency: int, workers: str, flow_run_per_row: bool,
    on_row: Callable[[CampaignEntry], None],
) -> None:
    """Every row still to make, ``concurrency`` at a time (threads, or worker processes); each
    outcome is settled in the plan as it comes, then ``on_row`` is called."""
    parallel = min(concurrency, len(plan.to_make))
    # Threads by default: FFmpeg, x264, OpenCV and numpy release the GIL, and worker processes
    # would each pay the imports.
    runner_type = ProcessPoolTaskRunner if workers == "processes" and parallel > 1 else ThreadPoolTaskRunner
    with runner_type(max_workers=parallel) as runner:
        futures = {
            runner.submit(
                make_recipient,
                parameters={"template": template, "prepared": prepared, "number": e.row.number, "values": e.row.values,
                            "output_uri": e.output_uri, "flow_run_per_row": flow_run_per_row},
            ): e.row.number
            for e in plan.to_make
        }
        for future in as_completed(list(futures)):
            try:
                outcome = future.result()
            except Exception as exc:  # the worker process itself died (e.g. out of memory)
                outcome = RowOutcome(number=futures[future], status="failed", error=failure_line(exc))
            on_row(plan.settle(outcome.number, outcome.status, outcome.error, outcome.seconds, outcome.share_url))


@task(name="make-batch-on-pool")
def make_batch_on_pool(template: str, sheet: str, output_dir: str, rows: list[int], concurrency: int) -> RowOutcome | None:
    """A batch of rows as a child run of the ``campaign`` deployment (on the CPU pool)."""
    run = run_deployment(
        CAMPAIGN_DEPLOYMENT,
        parameters={"template": template, "sheet": sheet, "output_dir": output_dir, "concurrency": concurrency, "rows": rows},
        timeout=None,
        poll_interval=5,
        as_subflow=True,
    )
    if run.state is None or not run.state.is_completed():
        name = run.state.name if run.state else "unknown"
        return RowOutcome(number=rows[0], status="failed", error=f"batch run {run.name} ended {name}")
    return None


def make_batches(
    plan: CampaignPlan, template: str, sheet: str, concurrency: int, batch_size: int, on_row: Callable[[CampaignEntry], None]
) -> None:
    """Scale out: each batch of rows is a child campaign run on the pool; their manifests are read
    back into the plan."""
    todo = [e.row.number for e in plan.to_make]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    futures = [make_batch_on_pool.submit(template, sheet, plan.output_dir, b, concurrency) for b in batches]
    for future, batch in zip(futures, batches):
        failed_run = future.result()
        child = {int(r["row"]): r for r in read_manifest_rows(plan.only_rows(batch).manifest_uri)}
        missing = {"status": "failed", "error": failed_run.error if failed_run else "no result from the batch run"}
        for number in batch:
            row = child.get(number, missing)
            status = "done" if row["status"] in ("done", "skipped") else row["status"]
            on_row(plan.settle(number, status, row.get("error") or "", share_url=row.get("share_url") or ""))
