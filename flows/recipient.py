"""One recipient as a Prefect flow: ``loom.pipeline.run_recipient`` with its steps as tasks.

The CLI's ``personalize`` runs the same composition with every step in its own process; a test
holds both to the same output. Here voice and visual tasks run in parallel, lip-sync goes to the
GPU pool when one is configured, and the orchestrator adds retries, caching and artifacts.
"""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from blocks import apply_configured_blocks
from loom import pipeline
from loom.pipeline import RecipientResult
from loom.recipients import check_row
from loom.template import load_template
from tasks.prepare import prepare_template_fresh
from tasks.provider_limits import use_orchestrator_slots
from tasks.recipient_steps import TaskSteps

# Voice lines and visual segments of one recipient at once; a campaign multiplies this by its
# own concurrency, so keep it small.
SEGMENT_WORKERS = 4


@flow(name="personalize-recipient", task_runner=ThreadPoolTaskRunner(max_workers=SEGMENT_WORKERS), log_prints=True)
def personalize_recipient(template: str, data: dict[str, str], output: str | None = None) -> RecipientResult:
    """Make one recipient's video from a template (id or path) and a row of placeholder values."""
    apply_configured_blocks()  # deployed runs: blocks named in the environment configure the engine
    use_orchestrator_slots()  # speech calls take their slots from the server's provider limits
    pipeline.check_configured_backend()
    tpl = load_template(template)
    check_row(tpl, data)  # bad input fails before any expensive work
    prepared = prepare_template_fresh(tpl)
    return pipeline.run_recipient(pipeline.plan_recipient(tpl, prepared, data, output), TaskSteps())
