"""Jobs are Prefect flow runs: created from deployments, read back for status, output and error.

A job's id is its flow run id, so the same run is visible in the Prefect UI. What Prefect does not
hold — who asked for it and where to send the webhook (URLs can carry tokens) — is kept in a
small record per job under ``$LOOM_HOME/jobs/`` beside the outputs, so it survives an API restart.
Prefect's client is imported where a run is created or read (about a second), so the API starts
and answers bad input without loading it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from typing import Literal
from urllib.parse import unquote

from pydantic import BaseModel, Field

from loom import storage
from loom.settings import get_settings

log = logging.getLogger("loom.jobs")

RECIPIENT_DEPLOYMENT = "personalize-recipient/personalize-recipient"
CAMPAIGN_DEPLOYMENT = "campaign/campaign"
JOB_TAG = "loom-api"
SIGNED_URL_TTL = dt.timedelta(hours=24)

JobStatus = Literal["scheduled", "running", "completed", "failed"]
FINAL: set[str] = {"completed", "failed"}


class OrchestratorUnavailable(RuntimeError):
    """The Prefect API cannot be reached, or the deployment is not there (a 503 for clients)."""


class JobNotFound(LookupError):
    pass


class JobRecord(BaseModel):
    """What the API keeps about a job that Prefect does not."""

    id: str
    kind: Literal["recipient", "campaign"]
    template_id: str
    owner: str = Field(description="hash of the API key that created the job (never the key)")
    created_at: dt.datetime
    output_dir: str | None = Field(default=None, description="a campaign's output folder (its manifest.csv)")
    webhook_url: str | None = None
    webhook_state: Literal["none", "pending", "delivered", "failed"] = "none"
    webhook_attempts: int = 0
    webhook_error: str | None = None


class JobView(BaseModel):
    """A job as clients see it."""

    id: str
    kind: Literal["recipient", "campaign"] = "recipient"
    template_id: str = ""
    status: JobStatus
    state: str = Field(description="Prefect's state name (Scheduled, Late, Running, Completed, Crashed, ...)")
    progress: float = Field(ge=0, le=1, description="0 to 1")
    output_uri: str | None = Field(default=None, description="where the output was stored")
    output_url: str | None = Field(default=None, description="where to open it: a signed URL for gs://, a signed link to this server's /media route for local storage")
    error: str | None = None
    created_at: dt.datetime | None = None
    webhook: str | None = Field(default=None, description="none, pending, delivered or failed")
    links: dict[str, str] = Field(
        default_factory=dict, description="what a browser opens: video, poster, gif, email, preview, share page; campaign page"
    )
    views: list[dict[str, str]] = Field(default_factory=list, description="the share page's views: time and user agent")


# ---------------------------------------------------------------- secrets never leave


def secret_values() -> list[str]:
    """Values that must never appear in a response, a log or a webhook, longest first."""

    settings = get_settings()
    values = []
    for secret in (settings.api_keys, settings.webhook_secret):
        if secret is not None:
            raw = secret.get_secret_value()
            values += [raw] + [k.strip() for k in raw.split(",")]
    for name, value in os.environ.items():
        if re.search(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIALS)", name, re.I) and not name.startswith("LOOM_HOME"):
            values.append(value)
    return sorted({v.strip() for v in values if v and v.strip()}, key=len, reverse=True)


# A secret this short also occurs inside ordinary words: it is replaced where it stands alone
# (between non-word characters), a longer one wherever it occurs.
SHORT_SECRET = 8


def scrub(text: str | None) -> str | None:
    if not text:
        return text
    for value in secret_values():
        if len(value) >= SHORT_SECRET:
            text = text.replace(value, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", "***", text)
    return text


class RedactQueries(logging.Filter):
    """HTTP client logs name every URL they call; a webhook's query string often holds its token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(a if isinstance(a, (int, float)) else _redact(a) for a in record.args)  # type: ignore[union-attr]
        record.msg = _redact(record.msg) if isinstance(record.msg, str) else record.msg
        return True


def _redact(value: object) -> str:
    return re.sub(r"(https?://[^\s?#\"']+)\?[^\s#\"']*", r"\1?***", str(value))


def quiet_http_client_logs() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueries) for f in logger.filters):
            logger.addFilter(RedactQueries())


# ---------------------------------------------------------------- records


class JobStore:
    """One JSON file per job under ``<home>/jobs`` (local or gs://)."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root or storage.join(storage.home(), "jobs")
        self._lock = threading.Lock()

    def _uri(self, job_id: str) -> str:
        return storage.join(self.root, f"{uuid.UUID(job_id)}.json")  # a UUID: never a path

    def save(self, record: JobRecord) -> None:
        with self._lock:
            storage.write_text(self._uri(record.id), record.model_dump_json(indent=2))

    def load(self, job_id: str) -> JobRecord:
        try:
            uri = self._uri(job_id)
        except ValueError:
            raise JobNotFound(job_id) from None
        if not storage.exists(uri):
            raise JobNotFound(job_id)
        return JobRecord.model_validate_json(storage.read_bytes(uri))

    def pending_webhooks(self) -> list[JobRecord]:
        out = []
        for uri in storage.list_dir(self.root):
            if uri.endswith(".json"):
                try:
                    record = JobRecord.model_validate_json(storage.read_bytes(uri))
                except ValueError:
                    continue
                if record.webhook_state == "pending":
                    out.append(record)
        return out


# ---------------------------------------------------------------- Prefect


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def status_of(state_type: str | None) -> JobStatus:
    """Prefect's state types folded into the four the jobs API promises."""
    name = (state_type or "SCHEDULED").upper()
    if name in ("SCHEDULED", "PENDING"):
        return "scheduled"
    if name in ("RUNNING", "PAUSED", "CANCELLING"):
        return "running"
    if name == "COMPLETED":
        return "completed"
    return "failed"  # FAILED, CRASHED, CANCELLED


def create_run(deployment: str, parameters: dict[str, object], idempotency_key: str | None = None) -> str:
    """Create a flow run of ``deployment`` (``flow/deployment``); its id."""
    from prefect.exceptions import ObjectNotFound

    try:
        with _client() as client:
            try:
                dep = client.read_deployment_by_name(deployment)
            except ObjectNotFound:
                raise OrchestratorUnavailable(
                    f"deployment {deployment} does not exist; start the stack with `loom up`"
                ) from None
            run = client.create_flow_run_from_deployment(
                dep.id, parameters=parameters, tags=[JOB_TAG], idempotency_key=idempotency_key
            )
    except OrchestratorUnavailable:
        raise
    except Exception as exc:  # httpx errors, Prefect HTTP errors: the orchestrator is not usable
        log.warning("cannot create a run of %s: %s", deployment, type(exc).__name__)
        raise OrchestratorUnavailable(
            f"the Prefect API is not reachable ({type(exc).__name__}); check PREFECT_API_URL or run `loom up`"
        ) from None
    return str(run.id)


_LINK = re.compile(r"^\[(?P<text>[^\]]*)\]\((?P<link>[^)\s]+)\)\s*$")
CONSOLE = "https://storage.cloud.google.com/"


def _storage_uri(ref: str) -> str | None:
    """A link or link text as a storage URI: file:// URLs and console links turned back into paths and gs://."""
    ref = ref.strip()
    if ref.startswith("file://"):
        return unquote(ref[len("file://") :])
    if ref.startswith(CONSOLE):
        return "gs://" + unquote(ref[len(CONSOLE) :])
    if ref.startswith(("gs://", "gcs://", "/", "https://", "http://")):
        return ref
    return None


def _artifact_uris(data: object) -> list[str]:
    """Storage URIs a link artifact names: its text first (the flow writes the URI there), then its link."""
    if not isinstance(data, str):
        return []
    match = _LINK.match(data.strip())
    refs = [match.group("text"), match.group("link")] if match else [data]
    return [uri for uri in (_storage_uri(r) for r in refs) if uri]


def _progress_from_artifacts(artifacts: list) -> float | None:
    for art in artifacts:
        if art.type == "progress" and isinstance(art.data, (int, float)):
            return max(0.0, min(1.0, float(art.data) / 100.0))
    return None


def _output_from_artifacts(artifacts: list, kind: str) -> str | None:
    wanted = (".mp4", ".mov", ".mkv", ".webm") if kind == "recipient" else (".csv",)
    for art in artifacts:
        if (art.type or "") not in ("markdown", "link"):
            continue
        for uri in _artifact_uris(art.data):
            if uri.split("?")[0].lower().endswith(wanted):
                return uri
    return None


def _output_from_result(state) -> str | None:
    """The flow's return value, when it was persisted where this process can read it."""
    try:
        result = state.result(raise_on_failure=False, fetch=True)
    except Exception:  # MissingResult and friends: the run kept no readable result
        return None
    if isinstance(result, dict):
        value = result.get("output_uri") or result.get("manifest_uri") or result.get("output")
        return value if isinstance(value, str) else None
    value = getattr(result, "output_uri", None) or getattr(result, "manifest_uri", None)
    return value if isinstance(value, str) else None


def _task_progress(client, flow_run_id: uuid.UUID) -> float:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200)
    if not runs:
        return 0.0
    done = sum(1 for r in runs if r.state is not None and r.state.is_final())
    return min(0.95, done / len(runs))  # more tasks may still be submitted: never claim done early


def read_job(record: JobRecord) -> JobView:
    """The job's state, progress, output and error as Prefect knows them now."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.exceptions import ObjectNotFound

    run_id = uuid.UUID(record.id)
    try:
        with _client() as client:
            try:
                run = client.read_flow_run(run_id)
            except ObjectNotFound:
                raise JobNotFound(record.id) from None
            state = run.state
            state_type = state.type.value if state is not None else None
            status = status_of(state_type)
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            progress = {"scheduled": 0.0, "completed": 1.0}.get(status)
            if progress is None:
                progress = _progress_from_artifacts(artifacts)
            if progress is None:
                progress = _task_progress(client, run_id) if status == "running" else 0.0
            output_uri = None
            if status == "completed":
                output_uri = _output_from_artifacts(artifacts, record.kind) or _output_from_result(state)
                if output_uri is None and record.output_dir:
                    manifest = storage.join(record.output_dir, "manifest.csv")
                    output_uri = manifest if storage.exists(manifest) else None
    except (JobNotFound, OrchestratorUnavailable):
        raise
    except Exception as exc:
        raise OrchestratorUnavailable(
            f"the Prefect API is not reachable ({type(exc).__name__}); check PREFECT_API_URL"
        ) from None
    page_links, seen = _links_and_views(record, output_uri) if output_uri else ({}, [])
    error = None
    if status == "failed":
        error = scrub(run_error(state.message if state is not None else None, state.name if state is not None else "Failed"))
    return JobView(
        id=record.id,
        kind=record.kind,
        template_id=record.template_id,
        status=status,
        state=state.name if state is not None else "Scheduled",
        progress=round(progress, 3),
        output_uri=output_uri,
        output_url=output_url(output_uri) if output_uri else None,
        error=error,
        created_at=record.created_at,
        webhook=record.webhook_state,
        links=page_links,
        views=seen,
    )


def _links_and_views(record: JobRecord, output_uri: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Fresh links to a finished job's files and pages, and its share page's views (from the
    recipient's record beside the video; a campaign's page link)."""
    from loom import links, shares
    from loom.campaign import campaign_id
    from loom.media.share_assets import output_stem

    if record.kind == "campaign":
        folder = record.output_dir or output_uri.rsplit("/", 1)[0]
        return {"campaign": links.campaign_page_url(campaign_id(folder))}, []
    record_uri = f"{output_stem(output_uri)}.json"
    try:
        made = json.loads(storage.read_text(record_uri)) if storage.exists(record_uri) else {}
    except (OSError, ValueError):
        made = {}
    found = {"video": links.browser_url(output_uri)}
    for name in ("poster", "gif", "email", "preview"):
        if made.get(f"{name}_uri"):
            found[name] = links.browser_url(made[f"{name}_uri"])
    token = made.get("share_token")
    seen: list[dict[str, str]] = []
    if token:
        found["share"] = links.share_page_url(token)
        seen = [{"at": v.at.isoformat(), "user_agent": v.user_agent} for v in shares.views(token)]
    return found, seen


_RUN_EXCEPTION = re.compile(r"^(?:Flow|Task) run encountered an exception:?\s*(?P<type>[A-Za-z_][\w.]*): (?P<line>.*)$", re.S)
USER_ERRORS = {"InputError", "RecipientFailed", "ServiceError"}


def run_error(message: str | None, state_name: str) -> str:
    """The run's failure in one line; a user error (bad input, a refused service) without its class name."""
    if not message:
        return f"the run ended {state_name}"
    match = _RUN_EXCEPTION.match(message.strip())
    if match:
        kind = match.group("type").rsplit(".", 1)[-1]
        line = " ".join(match.group("line").split())
        return line if kind in USER_ERRORS else f"{kind}: {line}"
    return " ".join(message.split())


# ---------------------------------------------------------------- output URLs


def output_url(uri: str, ttl: dt.timedelta | None = None) -> str | None:
    """A URL a client opens: a V4 signed URL for gs://; for a local file, a signed, expiring link
    served by this web server's media route (``loom.links``)."""
    from loom import links

    return links.browser_url(uri, int(ttl.total_seconds()) if ttl is not None else None)


def signed_gcs_url(uri: str, ttl: dt.timedelta = SIGNED_URL_TTL, credentials=None) -> str | None:  # noqa: ANN001
    """A V4 signed GET URL (``loom.links.signed_gcs_url``)."""
    from loom import links

    return links.signed_gcs_url(uri, ttl, credentials=credentials)


# ---------------------------------------------------------------- the webhook watcher


class WebhookWatcher:
    """Polls the runs of jobs with a webhook and delivers one when the run ends.

    It lives in the API process, so the signing secret never reaches workers, it works with any
    worker or pool, and it also notices runs that crashed (where a flow's own hooks never run).
    Deliveries are at least once: a receiver de-duplicates by job id and status.
    """

    def __init__(
        self,
        store: JobStore,
        send: Callable[[JobRecord, JobView], tuple[bool, int, str | None]],
        poll_s: float = 2.0,
    ) -> None:
        self.store = store
        self.send = send
        self.poll_s = poll_s
        self._pending: dict[str, JobRecord] = {}
        self._sending: set[str] = set()
        self._senders = threading.BoundedSemaphore(8)  # deliveries in flight at once
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, record: JobRecord) -> None:
        with self._lock:
            self._pending[record.id] = record
        self.start()
        self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="loom-webhooks", daemon=True)
            self._thread.start()

    def resume(self) -> None:
        """Pick up webhooks left pending by an earlier process."""
        try:
            for record in self.store.pending_webhooks():
                with self._lock:
                    self._pending.setdefault(record.id, record)
        except Exception as exc:
            log.warning("cannot read pending webhooks: %s", type(exc).__name__)
        if self._pending:
            self.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def check_once(self) -> None:
        with self._lock:
            records = list(self._pending.values())
        for record in records:
            if self._stop.is_set():
                return
            try:
                view = read_job(record)
            except JobNotFound:
                self._finish(record, False, 0, "the run no longer exists")
                continue
            except OrchestratorUnavailable:
                continue  # try again next round
            if view.status in FINAL:
                with self._lock:
                    if record.id in self._sending:
                        continue
                    self._sending.add(record.id)
                # Deliveries run beside the polling, so one slow receiver never delays the others.
                # Daemon threads: a dead receiver never holds the process open at shutdown; the job
                # stays pending in its record and is delivered after the restart.
                threading.Thread(target=self._deliver, args=(record, view), name="loom-webhook-send", daemon=True).start()

    def _deliver(self, record: JobRecord, view: JobView) -> None:
        with self._senders:
            try:
                delivered, attempts, error = self.send(record, view)
            except Exception as exc:  # a bug in sending must not kill the watcher
                log.exception("webhook for job %s failed", record.id)
                delivered, attempts, error = False, 0, type(exc).__name__
        self._finish(record, delivered, attempts, error)

    def _finish(self, record: JobRecord, delivered: bool, attempts: int, error: str | None) -> None:
        record = record.model_copy(
            update={
                "webhook_state": "delivered" if delivered else "failed",
                "webhook_attempts": attempts,
                "webhook_error": scrub(error),
            }
        )
        try:
            self.store.save(record)
        except Exception as exc:
            log.warning("cannot save job %s: %s", record.id, type(exc).__name__)
        with self._lock:
            self._pending.pop(record.id, None)
            self._sending.discard(record.id)
