"""A campaign as one plan: read and check the rows, say what each needs, keep the manifest, count
and report progress. The CLI runs the plan here (``run_campaign_locally``, a thread pool); the
Prefect ``campaign`` flow fans the same plan's rows out as tasks. Only the fan-out differs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from loom import storage
from loom.errors import InputError, RecipientFailed, ServiceError
from loom.links import browser_url
from loom.pipeline import check_configured_backend, personalize, prepare_template
from loom.input_policy import InputPolicy
from loom.recipients import CheckedRow, check_rows, read_sheet
from loom.template import Template

log = logging.getLogger("loom")

MANIFEST_COLUMNS = ["row", "row_key", "recipient", "status", "output_uri", "error", "seconds", "video_url", "share_url"]


@dataclass
class CampaignEntry:
    row: CheckedRow
    output_uri: str = ""
    status: str = "pending"  # pending | done | skipped | failed | invalid | duplicate
    error: str = ""
    seconds: float = 0.0
    video_url: str = ""  # what a browser opens (loom.links), once the video is there
    share_url: str = ""

    def manifest_row(self) -> dict[str, object]:
        return {
            "row": self.row.number,
            "row_key": self.row.key,
            "recipient": self.row.label,
            "status": self.status,
            "output_uri": self.output_uri,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "video_url": self.video_url,
            "share_url": self.share_url,
        }


@dataclass
class CampaignPlan:
    template: Template
    template_version: str
    output_dir: str
    entries: list[CampaignEntry] = field(default_factory=list)
    manifest_name: str = "manifest.csv"  # a batch of a scaled-out campaign keeps its own
    warnings: list[str] = field(default_factory=list)  # about the sheet as a whole (repeated columns)
    _by_number: dict[int, CampaignEntry] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def to_make(self) -> list[CampaignEntry]:
        return [e for e in self.entries if e.status == "pending"]

    @property
    def manifest_uri(self) -> str:
        return storage.join(self.output_dir, self.manifest_name)

    def only_rows(self, numbers: list[int]) -> CampaignPlan:
        """The plan cut to some sheet rows (a batch of a scaled-out campaign), with its own manifest."""
        wanted = set(numbers)
        entries = [e for e in self.entries if e.row.number in wanted]
        name = f"manifest-rows-{min(numbers)}-{max(numbers)}.csv"
        return CampaignPlan(self.template, self.template_version, self.output_dir, entries, manifest_name=name)

    def counts(self) -> dict[str, int]:
        """Rows per status."""
        counts: dict[str, int] = {}
        for entry in self.entries:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return counts

    def summary(self) -> str:
        return ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items()))

    def progress(self) -> float:
        """Percent of the rows to make that are settled (invalid and duplicate rows are not work)."""
        todo = [e for e in self.entries if e.status not in ("invalid", "duplicate")]
        return 100.0 if not todo else 100.0 * sum(e.status != "pending" for e in todo) / len(todo)

    def settle(self, number: int, status: str, error: str = "", seconds: float = 0.0, share_url: str = "") -> CampaignEntry:
        """Record what happened to row ``number`` (found by an index, so a campaign stays O(n))."""
        if len(self._by_number) != len(self.entries):
            self._by_number = {e.row.number: e for e in self.entries}
        entry = self._by_number[number]
        entry.status, entry.error, entry.seconds = status, error, seconds
        if status == "done":
            entry.share_url = share_url or entry.share_url
            entry.video_url = browser_url(entry.output_uri)
        return entry


def slug(text: str, limit: int = 40) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()
    return s[:limit].strip("-") or "recipient"


def output_name(row: CheckedRow) -> str:
    return f"{slug(row.label)}-{row.key}.mp4"


def default_output_dir(template: Template) -> str:
    return storage.join(storage.home(), "outputs", template.id)


def plan_campaign(
    template: Template, template_version: str, sheet: str, output_dir: str | None = None, policy: InputPolicy | None = None
) -> CampaignPlan:
    """Read and check every row first; mark invalid rows, duplicates and outputs that already exist.

    The sheet and every row's images are held to ``policy`` (default: the one in force for the
    template); a relative image path in a local sheet is read from the sheet's folder."""

    check_configured_backend()  # a campaign with a backend that is not installed fails once, not per row
    out_dir = output_dir or default_output_dir(template)
    policy = policy or InputPolicy.for_template(template)
    located = policy.check("sheet", sheet)
    if "://" not in located:  # relative paths in a sheet are read from the sheet's own folder
        policy = dataclasses.replace(policy, base=os.path.dirname(located))
    read = read_sheet(located, policy)
    rows = check_rows(template, template_version, read.rows, policy)
    plan = CampaignPlan(template=template, template_version=template_version, output_dir=out_dir, warnings=read.warnings)
    for warning in read.warnings:
        log.warning(warning)
    for row in rows:
        entry = CampaignEntry(row=row)
        if row.error:
            entry.status, entry.error = "invalid", row.error
        elif row.duplicate_of is not None:
            entry.status, entry.error = "duplicate", f"same values as row {row.duplicate_of}"
            entry.output_uri = storage.join(out_dir, output_name(row))
        else:
            entry.output_uri = storage.join(out_dir, output_name(row))
            if storage.exists(entry.output_uri):
                entry.status = "skipped"  # made by an earlier run: resume without duplicates
                entry.video_url = browser_url(entry.output_uri)
        plan.entries.append(entry)
    return plan


def _inert(value: object) -> object:
    """Keep a spreadsheet from running a cell as a formula (values come from user sheets)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def manifest_csv(entries: list[CampaignEntry], header: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS)
    if header:
        writer.writeheader()
    for entry in entries:
        writer.writerow({k: _inert(v) for k, v in entry.manifest_row().items()})
    return buf.getvalue()


def write_manifest(plan: CampaignPlan) -> str:
    """The whole manifest, one line per row."""
    return storage.write_text(plan.manifest_uri, manifest_csv(plan.entries))


def campaign_id(output_dir: str) -> str:
    """A campaign's id (its page's name): from its output folder, where its manifest lives."""
    import hashlib

    return hashlib.sha256(output_dir.rstrip("/").encode("utf-8")).hexdigest()[:16]


def register_campaign(plan: CampaignPlan) -> str:
    """Note where the campaign's manifest is (``<home>/campaigns/<id>.json``) so its page finds it."""
    import json

    cid = campaign_id(plan.output_dir)
    entry = {"id": cid, "output_dir": plan.output_dir, "manifest_uri": plan.manifest_uri, "template_id": plan.template.id}
    storage.write_text(storage.join(storage.home(), "campaigns", f"{cid}.json"), json.dumps(entry))
    return cid


def registered_campaign(cid: str) -> dict[str, str] | None:
    import json

    if not re.fullmatch(r"[0-9a-f]{16}", cid or ""):
        return None
    uri = storage.join(storage.home(), "campaigns", f"{cid}.json")
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


def read_manifest_rows(uri: str) -> list[dict[str, str]]:
    """The manifest's rows in sheet order, a row's last line winning (as it is being appended to)."""
    if not storage.exists(uri):
        return []
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(storage.read_text(uri)))}
    return sorted(rows.values(), key=lambda r: int(r["row"]) if r["row"].isdigit() else 0)


class ManifestWriter:
    """The manifest kept current as rows settle, in O(n) over a campaign: written whole once, then
    one line appended per settled row (a later line for a row supersedes its earlier one, as
    ``read_manifest_statuses`` reads it), and written whole again, one line per row, at the end.
    A remote manifest (gs://) cannot be appended to: it is rewritten at most every ``every_s``."""

    def __init__(self, plan: CampaignPlan, every_s: float = 5.0) -> None:
        self.plan = plan
        self._local = not storage.is_remote(plan.manifest_uri)
        self._throttle = Throttle(every_s)
        write_manifest(plan)
        # the whole campaign has a page; a batch of a scaled-out one is part of its parent's
        self.campaign_id = register_campaign(plan) if plan.manifest_name == "manifest.csv" else None

    def row_settled(self, entry: CampaignEntry) -> None:
        if self._local:
            storage.append_text(self.plan.manifest_uri, manifest_csv([entry], header=False))
        elif self._throttle.due():
            write_manifest(self.plan)

    def close(self) -> str:
        return write_manifest(self.plan)


def read_manifest_statuses(uri: str) -> dict[int, tuple[str, str]]:
    """``{row: (status, error)}`` of a manifest (empty if none); a row's last line wins."""
    if not storage.exists(uri):
        return {}
    return {int(r["row"]): (r["status"], r["error"]) for r in csv.DictReader(io.StringIO(storage.read_text(uri)))}


class Throttle:
    """True at most once every ``seconds`` (for progress reports that each cost a server call)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._next = time.monotonic() + seconds

    def due(self) -> bool:
        if time.monotonic() < self._next:
            return False
        self._next = time.monotonic() + self.seconds
        return True


def failure_line(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return exc.line()
    if isinstance(exc, (RecipientFailed, ServiceError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:500]


def make_entry(plan: CampaignPlan, entry: CampaignEntry, personalize: Callable[..., object]) -> CampaignEntry:
    started = time.perf_counter()
    try:
        result = personalize(plan.template, entry.row.values, entry.output_uri)
        links = getattr(result, "links", None) or {}
        plan.settle(entry.row.number, "done", seconds=time.perf_counter() - started, share_url=links.get("share", ""))
    except Exception as exc:  # one recipient's failure never stops the others
        entry.status, entry.error = "failed", failure_line(exc)
        entry.seconds = time.perf_counter() - started
        log.warning("row %s failed: %s", entry.row.number, entry.error)
    return entry


def run_campaign_locally(
    plan: CampaignPlan, concurrency: int = 2, on_progress: Callable[[CampaignEntry], None] | None = None
) -> CampaignPlan:
    """Make every pending entry with a bounded thread pool; the manifest is current after each row."""
    if plan.to_make:
        prepare_template(plan.template)  # once, before the fan-out
    manifest = ManifestWriter(plan)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for entry in pool.map(lambda e: make_entry(plan, e, personalize), plan.to_make):
            if on_progress:
                on_progress(entry)
            manifest.row_settled(entry)
    manifest.close()
    return plan
