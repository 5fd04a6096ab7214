"""A campaign: every valid sheet row made into a video, with bounded concurrency.

Every row is read and checked before anything is made; rows whose video already exists are
skipped, so a re-run after a crash resumes without duplicates. A bad row or a failed recipient
never stops the others: the manifest (``manifest.csv`` in the output folder, also a table
artifact) says what happened to each row and why. Planning and the manifest come from
``loom.campaign``, shared with the CLI's campaign without Prefect; only the fan-out differs.

Locally each row is a ``make-recipient`` task running the recipient flow's steps in this run
(``flows.recipient.recipient_steps``: its network steps as tasks, the local ones as plain calls,
its artifacts), ``concurrency`` rows at a time on threads: a flow run per row would cost about a
second each (its API calls, and the flow engine's heartbeat thread, joined at the end of every
run), which on a small recording is more than the recipient itself. ``flow_run_per_row`` brings that back for those who want a run per
recipient in the UI. ``workers="processes"`` runs rows in worker processes instead (each pays
its own start-up; worth it only for long recordings whose Python-side steps hold the GIL). With
``scale_out`` the valid rows are split into batches and each batch runs as a child run of this
same deployment on the CPU pool, so many machines share a large sheet and per-run overhead is
paid per batch, not per row.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Annotated, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.deployments import run_deployment
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from blocks import apply_configured_blocks
from loom import storage
from loom.campaign import CampaignEntry, CampaignPlan, failure_line, manifest_csv, plan_campaign
from loom.pipeline import template_version
from loom.prepared import PreparedTemplate
from loom.template import load_template
from tasks.artifacts import record_campaign_lineage
from tasks.prepare import prepare_template_fresh

CAMPAIGN_DEPLOYMENT = "campaign/campaign"
# Hard ceiling on recipients made at once in one process; ``concurrency`` picks below it.
MAX_CONCURRENCY = 16
# The local SQLite server fails with "database is locked" beyond about four concurrent subflows.
DEFAULT_CONCURRENCY = 2
# The progress artifact is updated at most this often while rows finish (a server call each).
UPDATE_EVERY_S = 2.0


class CampaignResult(BaseModel):
    """What a campaign run did: counts per status and where the manifest is."""

    manifest_uri: str
    output_dir: str
    counts: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0


class RowOutcome(BaseModel):
    number: int
    status: str
    error: str = ""
    seconds: float = 0.0


@task(name="make-recipient", task_run_name="row-{number}")
def make_recipient(
    template: str, prepared: PreparedTemplate, number: int, values: dict[str, str], output_uri: str, flow_run_per_row: bool = False
) -> RowOutcome:
    """One row: the recipient's steps as tasks of this campaign run (or, with ``flow_run_per_row``, as
    a ``personalize-recipient`` subflow run). Its failure is recorded, never raised."""
    from flows.recipient import personalize_recipient, recipient_steps

    started = time.perf_counter()
    try:
        if flow_run_per_row:
            personalize_recipient(template=template, data=values, output=output_uri)
        else:
            apply_configured_blocks()  # a worker process of the pool starts without the parent's settings
            recipient_steps(prepared.template, prepared, values, output_uri, parallel=False)
    except Exception as exc:  # one recipient's failure never stops the others
        get_run_logger().warning("row %s failed: %s", number, failure_line(exc))
        return RowOutcome(number=number, status="failed", error=failure_line(exc), seconds=time.perf_counter() - started)
    return RowOutcome(number=number, status="done", seconds=time.perf_counter() - started)


@task(name="make-batch-on-pool")
def make_batch_on_pool(template: str, sheet: str, output_dir: str, rows: list[int], concurrency: int) -> RowOutcome | None:
    """A batch of rows as a child run of the ``campaign`` deployment (on the CPU pool)."""
    run = run_deployment(
        CAMPAIGN_DEPLOYMENT,
        parameters={
            "template": template,
            "sheet": sheet,
            "output_dir": output_dir,
            "concurrency": concurrency,
            "rows": rows,
        },
        timeout=None,
        poll_interval=5,
        as_subflow=True,
    )
    if run.state is None or not run.state.is_completed():
        name = run.state.name if run.state else "unknown"
        return RowOutcome(number=rows[0], status="failed", error=f"batch run {run.name} ended {name}")
    return None


def batch_manifest_uri(output_dir: str, rows: list[int]) -> str:
    return storage.join(output_dir, f"manifest-rows-{min(rows)}-{max(rows)}.csv")


def _write_manifest(uri: str, entries: list[CampaignEntry]) -> str:
    return storage.write_text(uri, manifest_csv(entries))


def _read_child_errors(uri: str) -> dict[int, tuple[str, str]]:
    if not storage.exists(uri):
        return {}
    reader = csv.DictReader(io.StringIO(storage.read_text(uri)))
    return {int(r["row"]): (r["status"], r["error"]) for r in reader}


def _progress(plan: CampaignPlan) -> float:
    todo = [e for e in plan.entries if e.status not in ("invalid", "duplicate")]
    if not todo:
        return 100.0
    return 100.0 * sum(e.status != "pending" for e in todo) / len(todo)


@flow(name="campaign", task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENCY), log_prints=True)
def campaign(
    template: str,
    sheet: str,
    output_dir: str | None = None,
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, description="recipients made at once")] = DEFAULT_CONCURRENCY,
    scale_out: Annotated[bool, Field(description="run batches of rows as child runs of this deployment on the CPU pool")] = False,
    batch_size: Annotated[int, Field(ge=1, le=1000, description="rows per child run when scaling out")] = 10,
    rows: Annotated[list[int] | None, Field(description="only these sheet rows (1 = first data row); set by scale-out")] = None,
    workers: Annotated[
        Literal["processes", "threads"], Field(description="make recipients in worker processes (parallel) or threads")
    ] = "threads",
    flow_run_per_row: Annotated[
        bool, Field(description="each row as its own personalize-recipient flow run (about 1 s more per row)")
    ] = False,
) -> CampaignResult:
    """Make one video per sheet row (CSV/XLSX; local, gs:// or https://) and write the manifest."""
    apply_configured_blocks()  # deployed runs: blocks named in the environment configure the engine
    started = time.perf_counter()
    logger = get_run_logger()
    tpl = load_template(template)
    plan = plan_campaign(tpl, template_version(tpl), sheet, output_dir)
    if rows is not None:
        wanted = set(rows)
        plan.entries = [e for e in plan.entries if e.row.number in wanted]
    manifest_uri = plan.manifest_uri if rows is None else batch_manifest_uri(plan.output_dir, rows)
    for entry in plan.entries:
        if entry.status in ("invalid", "duplicate", "skipped"):
            logger.info("row %s: %s %s", entry.row.number, entry.status, entry.error)
    _write_manifest(manifest_uri, plan.entries)
    progress_id = create_progress_artifact(
        progress=_progress(plan), key=None if rows else "campaign-progress", description=f"{tpl.id}: {sheet}"
    )
    prepared = prepare_template_fresh(tpl) if plan.to_make else None  # once, before the fan-out
    if scale_out and rows is None:
        _run_batches(template, sheet, plan, concurrency, batch_size, progress_id)
    elif plan.to_make:
        # The pool bounds how many recipients are made at once. Threads by default: FFmpeg, x264,
        # OpenCV and numpy release the GIL, and worker processes would each pay the imports.
        parallel = min(concurrency, len(plan.to_make))
        runner_type = ProcessPoolTaskRunner if workers == "processes" and parallel > 1 else ThreadPoolTaskRunner
        next_update = time.monotonic() + UPDATE_EVERY_S
        with runner_type(max_workers=parallel) as runner:
            futures = {
                runner.submit(
                    make_recipient,
                    parameters={"template": template, "prepared": prepared, "number": e.row.number, "values": e.row.values,
                                "output_uri": e.output_uri, "flow_run_per_row": flow_run_per_row},
                ): e
                for e in plan.to_make
            }
            for future in as_completed(list(futures)):
                entry = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the worker process itself died (e.g. out of memory)
                    outcome = RowOutcome(number=entry.row.number, status="failed", error=failure_line(exc))
                entry.status, entry.error, entry.seconds = outcome.status, outcome.error, outcome.seconds
                _write_manifest(manifest_uri, plan.entries)  # current after every row: a kill loses nothing
                if time.monotonic() >= next_update:
                    update_progress_artifact(progress_id, _progress(plan))
                    next_update = time.monotonic() + UPDATE_EVERY_S
    _write_manifest(manifest_uri, plan.entries)
    update_progress_artifact(progress_id, 100.0)
    if prepared is not None and not flow_run_per_row and not (scale_out and rows is None):
        # rows made here (not by batch runs or their own flow runs, which record their own)
        made = {e.row.key: e.output_uri for e in plan.entries if e.status == "done"}
        record_campaign_lineage(prepared, made)
    counts: dict[str, int] = {}
    for entry in plan.entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    create_table_artifact(
        table=[e.manifest_row() for e in plan.entries],
        key=None if rows else "campaign-manifest",
        description=f"Campaign {tpl.id}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
    )
    return CampaignResult(
        manifest_uri=manifest_uri, output_dir=plan.output_dir, counts=counts, seconds=round(time.perf_counter() - started, 3)
    )


def _run_batches(template: str, sheet: str, plan: CampaignPlan, concurrency: int, batch_size: int, progress_id: object) -> None:
    """Scale out: each batch of rows is a child campaign run on the pool; read back their manifests."""
    todo = [e.row.number for e in plan.to_make]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    futures = [make_batch_on_pool.submit(template, sheet, plan.output_dir, b, concurrency) for b in batches]
    by_number = {e.row.number: e for e in plan.entries}
    for future, batch in zip(futures, batches):
        failed_run = future.result()
        child = _read_child_errors(batch_manifest_uri(plan.output_dir, batch))
        for number in batch:
            entry = by_number[number]
            status, error = child.get(number, ("failed", failed_run.error if failed_run else "no result from the batch run"))
            entry.status, entry.error = status, error
            if status in ("done", "skipped"):
                entry.status = "done"
        update_progress_artifact(progress_id, _progress(plan))
