"""A campaign: every valid sheet row made into a video, with bounded concurrency.

Every row is read and checked before anything is made; rows whose video already exists are
skipped, so a re-run after a crash resumes without duplicates. A bad row or a failed recipient
never stops the others: the manifest (``manifest.csv`` in the output folder, also a table
artifact) says what happened to each row and why. The plan, its manifest, counts and progress
are ``loom.campaign``'s, shared with the CLI's campaign without Prefect; this flow only fans the
rows out (``tasks.campaign_rows``). With ``scale_out`` the rows are split into batches, each a
child run of this same deployment on the CPU pool, so many machines share a large sheet and
per-run overhead is paid per batch, not per row: as many batches as the pool takes runs at once
(its concurrency limit, less this run), of at least 50 rows each, unless ``batch_size`` says.
Every run's speech takes its slots from the same provider limits, so scaling out multiplies
rendering, never the calls the voice provider sees.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, Field

from blocks import apply_configured_blocks
from loom.campaign import plan_campaign
from loom.pipeline import template_version
from loom.provider_slots import ELEVENLABS, refusals
from loom.template import load_template
from tasks.artifacts import CampaignReporter, campaign_table, record_campaign_lineage
from tasks.campaign_rows import batch_rows, make_batches, make_rows, pool_capacity
from tasks.prepare import prepare_template_fresh
from tasks.provider_limits import use_orchestrator_slots

# Hard ceiling on recipients made at once in one process; ``concurrency`` picks below it.
MAX_CONCURRENCY = 16
# The local SQLite server fails with "database is locked" beyond about four concurrent subflows.
DEFAULT_CONCURRENCY = 2


class CampaignResult(BaseModel):
    """What a campaign run did: counts per status and where the manifest is."""

    manifest_uri: str
    output_dir: str
    counts: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0
    provider_refusals: int = Field(default=0, description="429s ElevenLabs still answered to this run's process (each retried)")


@flow(name="campaign", task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENCY), log_prints=True)
def campaign(
    template: str,
    sheet: str,
    output_dir: str | None = None,
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, description="recipients made at once")] = DEFAULT_CONCURRENCY,
    scale_out: Annotated[bool, Field(description="run batches of rows as child runs of this deployment on the CPU pool")] = False,
    batch_size: Annotated[
        int | None, Field(ge=1, le=10000, description="rows per child run when scaling out (unset: sized from the sheet and the pool)")
    ] = None,
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
    use_orchestrator_slots()  # speech calls take their slots from the server's provider limits
    refused_before = refusals(ELEVENLABS)
    started = time.perf_counter()
    tpl = load_template(template)
    plan = plan_campaign(tpl, template_version(tpl), sheet, output_dir)
    plan = plan.only_rows(rows) if rows else plan  # a batch of a scaled-out campaign
    key = None if rows else "campaign"  # the UI's campaign artifacts are the parent's
    report = CampaignReporter(plan, f"{tpl.id}: {sheet}", key)
    prepared = prepare_template_fresh(tpl) if plan.to_make else None  # once, before the fan-out
    scaled = scale_out and not rows and bool(plan.to_make)  # a batch never scales out again
    per_batch = batch_rows(len(plan.to_make), pool_capacity(), batch_size) if scaled else 0
    if scaled and not per_batch:
        print(f"not scaling out: {len(plan.to_make)} rows are too few for child runs, or the pool has no room beside this run")
    if per_batch:
        make_batches(plan, template, sheet, concurrency, per_batch, on_row=report.row_settled)
    elif prepared is not None:
        make_rows(plan, template, prepared, concurrency, workers, flow_run_per_row, on_row=report.row_settled)
        if not flow_run_per_row:  # rows made here record their lineage at once; their own runs record theirs
            record_campaign_lineage(prepared, {e.row.key: e.output_uri for e in plan.entries if e.status == "done"})
    report.close()
    campaign_table(plan, tpl.id, key)
    seconds = round(time.perf_counter() - started, 3)
    return CampaignResult(manifest_uri=plan.manifest_uri, output_dir=plan.output_dir, counts=plan.counts(), seconds=seconds,
                          provider_refusals=refusals(ELEVENLABS) - refused_before)
