"""A campaign's rows as tasks: one row's speech (``speak-row``) and video (``make-recipient``) in this
run, a batch of rows as a child run on the CPU pool (``make-batch-on-pool``), and the fan-out of a
plan over them.

Speech and rendering are separate stages: a row's lines are spoken first, by as many rows as the
provider has slots, each call holding a slot of the provider's global limit
(shared with every other run and worker); then its video is made, ``concurrency`` rows at a time.
So rendering overlaps the wait for speech, and the provider sees no more calls than it allows
however many campaigns run.

Locally each row is a ``make-recipient`` task running ``loom.pipeline.run_recipient`` with the
task steps (network steps as tasks, the local ones as plain calls), ``concurrency`` rows at a time
on threads: a flow run per row would cost about a second each (its API calls, and the flow
engine's heartbeat thread, joined at the end of every run), which on a small recording is more
than the recipient itself. ``flow_run_per_row`` brings that back for those who want a run per
recipient in the UI; ``workers="processes"`` runs rows in worker processes instead (each pays its
own start-up; worth it only for long recordings whose Python-side steps hold the GIL).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from prefect import get_run_logger, task
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel

from blocks import apply_configured_blocks
from loom import pipeline
from loom.campaign import CampaignEntry, CampaignPlan, failure_line, read_manifest_rows
from loom.prepared import PreparedTemplate
from loom.provider_slots import ELEVENLABS, slots_configured
from tasks.provider_limits import use_orchestrator_slots
from tasks.recipient_steps import TaskSteps
from tasks.retries import network_retry_options

CAMPAIGN_DEPLOYMENT = "campaign/campaign"


class RowOutcome(BaseModel):
    number: int
    status: str
    error: str = ""
    seconds: float = 0.0
    share_url: str = ""


@task(name="make-recipient", task_run_name="row-{number}")
def make_recipient(
    template: str, prepared: PreparedTemplate, number: int, values: dict[str, str], output_uri: str, flow_run_per_row: bool = False,
    spoken: bool = False,
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
            use_orchestrator_slots()
            job = pipeline.plan_recipient(prepared.template, prepared, values, output_uri)
            result = pipeline.run_recipient(job, TaskSteps(parallel=False, spoken=spoken))
    except Exception as exc:  # one recipient's failure never stops the others
        get_run_logger().warning("row %s failed: %s", number, failure_line(exc))
        return RowOutcome(number=number, status="failed", error=failure_line(exc), seconds=time.perf_counter() - started)
    return RowOutcome(number=number, status="done", seconds=time.perf_counter() - started, share_url=result.links.get("share", ""))


@task(name="speak-row", task_run_name="speak-row-{number}", **network_retry_options())
def speak_row(prepared: PreparedTemplate, number: int, values: dict[str, str]) -> list[str]:
    """Every voice line of one row spoken into the speech cache (``pipeline.speak_line``; their
    cache keys); each call to the provider holds one of its slots (``tasks.provider_limits``), so
    rows wait for a slot here. Fitting the lines is the render's (local work)."""
    resolved, _ = pipeline.resolve_recipient(prepared.template, prepared, values)
    return [pipeline.speak_line(prepared, seg, resolved) for seg in prepared.template.voice_segments]


def speech_workers(rows: int) -> int:
    """Rows speaking at once in this run: the provider's slots. More would not speak sooner: this
    process asks the server for a slot one request at a time, and a refused request waits out the
    server's Retry-After at the head of that queue."""
    return max(1, min(rows, slots_configured(ELEVENLABS)))


def make_rows(
    plan: CampaignPlan, template: str, prepared: PreparedTemplate, concurrency: int, workers: str, flow_run_per_row: bool,
    on_row: Callable[[CampaignEntry], None],
) -> None:
    """Every row still to make, in two stages that overlap: its lines are spoken (``speak-row``,
    bounded by the provider's slots, shared with every other run), then its video is made
    (``make-recipient``, ``concurrency`` at a time, on threads or worker processes). Each outcome
    is settled in the plan as it comes, then ``on_row`` is called."""
    todo = plan.to_make
    if not todo:
        return
    parallel = min(concurrency, len(todo))
    # Threads by default: FFmpeg, x264, OpenCV and numpy release the GIL, and worker processes
    # would each pay the imports.
    runner_type = ProcessPoolTaskRunner if workers == "processes" and parallel > 1 else ThreadPoolTaskRunner
    finished: queue.Queue[tuple[str, CampaignEntry, PrefectFuture]] = queue.Queue()

    def when_done(stage: str, entry: CampaignEntry) -> Callable[[PrefectFuture], None]:
        return lambda future: finished.put((stage, entry, future))

    with ThreadPoolTaskRunner(max_workers=speech_workers(len(todo))) as speech, runner_type(max_workers=parallel) as render:
        for entry in todo:
            future = speech.submit(speak_row, parameters={"prepared": prepared, "number": entry.row.number, "values": entry.row.values})
            future.add_done_callback(when_done("spoken", entry))
        unsettled = len(todo)
        while unsettled:
            stage, entry, future = finished.get()
            try:
                result = future.result()
            except Exception as exc:  # speech failed for good, or a worker process died (e.g. out of memory)
                on_row(plan.settle(entry.row.number, "failed", failure_line(exc)))
                unsettled -= 1
                continue
            if stage == "spoken":
                made = render.submit(
                    make_recipient,
                    parameters={"template": template, "prepared": prepared, "number": entry.row.number,
                                "values": entry.row.values, "output_uri": entry.output_uri,
                                "flow_run_per_row": flow_run_per_row, "spoken": True},
                )
                made.add_done_callback(when_done("made", entry))
            else:
                on_row(plan.settle(result.number, result.status, result.error, result.seconds, result.share_url))
                unsettled -= 1


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


# A child run costs seconds before its first row (a worker's poll, a process, the imports, the
# template's files): a batch smaller than this is not worth one.
MIN_BATCH_ROWS = 50
# Child runs at once when the pool sets no concurrency limit of its own.
DEFAULT_POOL_RUNS = 4


def pool_capacity() -> int | None:
    """Child campaign runs the CPU pool takes at once: its concurrency limit less the parent's own
    run (None: the pool sets no limit)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_deployment_by_name(CAMPAIGN_DEPLOYMENT).work_pool_name
        except ObjectNotFound:
            return 0  # no campaign deployment on this server: nothing to run batches on
        limit = client.read_work_pool(pool).concurrency_limit if pool else None
    return None if limit is None else limit - 1


def batch_rows(rows: int, capacity: int | None, batch_size: int | None) -> int:
    """Rows per child run: as asked, or the rows spread over the runs the pool takes at once, never
    fewer than ``MIN_BATCH_ROWS`` (0: not worth scaling out, or the pool has no room beside the parent)."""
    runs = DEFAULT_POOL_RUNS if capacity is None else capacity
    if runs < 1:
        return 0
    if batch_size:
        return batch_size
    if rows < 2 * MIN_BATCH_ROWS:
        return 0
    return max(MIN_BATCH_ROWS, -(-rows // runs))


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
