"""The jobs API (``loom serve``): the seed's ``POST /jobs`` and ``GET /jobs/{id}`` on top of Prefect.

Every request needs an ``X-API-Key`` from ``LOOM_API_KEYS`` and is rate limited per key. Input is
checked here, before any run is created, with the engine's own validators, so a bad request is a
4xx naming the field and the fix, and a run never starts on input that cannot work.

Run it with ``uvicorn.run(create_app(), host=..., port=...)``; OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app import jobs, webhooks
from app.auth import DEFAULT_RATE_PER_MINUTE, DEFAULT_RUN_RATE_PER_MINUTE, RateLimiter, api_key_header, parse_keys, require_key
from app.studio import UPLOAD_PATH, studio_router
from app.studio_session import StudioSessions
from loom import storage
from loom.errors import InputError
from loom.input_policy import InputPolicy
from loom.recipients import check_row, check_value, read_sheet_head
from loom.settings import LoomSettings, get_settings
from loom.template import Template, check_safe_id, list_templates, load_template, looks_like_path, template_uri

log = logging.getLogger("loom.api")

MAX_BODY_BYTES = 256 * 1024


# ---------------------------------------------------------------- request and response shapes


class JobRequest(BaseModel):
    """A template id, one field per placeholder of that template, and an optional webhook."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "template_id": "demo",
                    "client_name": "Ada",
                    "company_name": "Acme",
                    "logo": "https://example.com/acme.png",
                    "webhook_url": "https://crm.example.com/hooks/loom",
                }
            ]
        },
    )
    template_id: str = Field(max_length=128, description="id of a stored template (GET /templates)")
    webhook_url: str | None = Field(default=None, description="POSTed a signed JSON body when the job ends")


class CampaignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: str = Field(max_length=128)
    sheet: str = Field(max_length=2048, description="gs://, https:// or a file under $LOOM_HOME: CSV or XLSX")
    webhook_url: str | None = None


class JobCreated(BaseModel):
    id: str
    status: str = "scheduled"
    status_url: str


class TemplateInfo(BaseModel):
    id: str
    name: str
    placeholders: list[str]
    image_placeholders: list[str]
    voice_segments: int
    visual_segments: int


def _input_error(exc: InputError, code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> HTTPException:
    return _input_errors([exc], code)


def _input_errors(errors: list[InputError], code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> HTTPException:
    detail = [
        {"loc": ["body", e.field.split(" ")[0]], "field": e.field, "msg": jobs.scrub(e.line()), "type": "value_error"}
        for e in errors
    ]
    return HTTPException(code, detail=detail)


# ---------------------------------------------------------------- checks on what clients send


def input_policy(template: Template) -> InputPolicy:
    """Where a client may point a logo or a sheet (``loom.input_policy``: the same rule the run
    applies again when it reads them)."""
    return InputPolicy.for_template(template)


def load_api_template(template_id: str) -> Template:
    """A stored template by id only (never a path), or a 4xx naming template_id."""
    try:
        check_safe_id(template_id, "template_id")
        uri = template_uri(template_id)
    except InputError as exc:
        raise _input_error(exc) from None
    if not storage.exists(uri):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"template_id: no template with id {template_id!r} (GET /templates lists them)",
        )
    try:
        return load_template(uri)
    except InputError as exc:
        raise _input_error(exc) from None


def check_job_values(template: Template, values: dict[str, Any]) -> dict[str, str]:
    """Every placeholder checked; all problems reported together, each naming its field."""
    nested = values.get("data")
    if isinstance(nested, dict) and "data" not in template.placeholders():
        # {"template_id": ..., "data": {...}} as well as the seed's flat body
        values = {**{k: v for k, v in values.items() if k != "data"}, **nested}
    problems: list[InputError] = []
    image_keys = template.image_keys()
    policy = input_policy(template)
    resolved: dict[str, str] = {}  # image values as the worker must read them (absolute paths)
    for key in template.placeholders():  # fields that are not placeholders are ignored
        if key not in values or values[key] is None:
            problems.append(InputError(key, "is missing", f"add a {key!r} field"))
            continue
        if not isinstance(values[key], (str, int, float)) or isinstance(values[key], bool):
            problems.append(InputError(key, "must be text", f'send "{key}" as a string'))
            continue
        try:
            text = str(values[key]).replace("\r", " ").replace("\n", " ").replace("\t", " ")  # as in sheets
            value = check_value(key, text.strip(), is_image=key in image_keys)
            if key in image_keys:
                resolved[key] = policy.check(key, value)
        except InputError as exc:
            problems.append(exc)
    if problems:
        raise _input_errors(problems)
    try:
        checked = check_row(template, values)  # the engine's own check has the last word
    except InputError as exc:
        raise _input_error(exc) from None
    return {**checked, **resolved}


def _template_param(template_id: str) -> str:
    # An id that reads like a path (ends in .json) would be opened relative to the worker's cwd.
    return template_uri(template_id) if looks_like_path(template_id) else template_id


# ---------------------------------------------------------------- the app


def caller(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> str:
    """The caller's key id, after the key and the rate limit are checked (401 / 429 otherwise)."""
    return require_key(request, key)


def run_caller(request: Request, key: Annotated[str | None, Depends(api_key_header)]) -> str:
    """As ``caller``, also counting against the key's limit on new jobs."""
    return require_key(request, key, starts_run=True)


Caller = Annotated[str, Depends(caller)]
RunCaller = Annotated[str, Depends(run_caller)]


class _BodyLimit:
    """Refuse bodies over ``limit`` bytes (413) before anything parses them."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") == UPLOAD_PATH:  # uploads have their own cap
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": f"body over {self.limit} bytes"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, detail=f"body over {self.limit} bytes")
            return message

        return await self.app(scope, limited_receive, send)


def create_app(
    settings: LoomSettings | None = None,
    *,
    rate_limit_per_minute: int | None = None,
    run_rate_limit_per_minute: int | None = None,
    webhook_poll_s: float = 2.0,
    webhook_attempts: int = 5,
    webhook_backoff_s: float = 1.0,
    recipient_deployment: str = jobs.RECIPIENT_DEPLOYMENT,
    campaign_deployment: str = jobs.CAMPAIGN_DEPLOYMENT,
) -> FastAPI:
    """The jobs API. Settings come from the environment (``LOOM_*``) unless given.

    Per key, ``rate_limit_per_minute`` requests (``LOOM_API_RATE_LIMIT``, default 600) of which
    ``run_rate_limit_per_minute`` may create jobs (``LOOM_API_JOB_RATE_LIMIT``, default 60); 0 turns
    a limit off.
    """
    settings = settings or get_settings()
    jobs.quiet_http_client_logs()
    keys = parse_keys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    allowed_hosts = webhooks.parse_allowed_hosts(settings.webhook_allowed_hosts)
    if rate_limit_per_minute is None:
        rate_limit_per_minute = int(os.environ.get("LOOM_API_RATE_LIMIT", DEFAULT_RATE_PER_MINUTE))
    if run_rate_limit_per_minute is None:
        run_rate_limit_per_minute = int(os.environ.get("LOOM_API_JOB_RATE_LIMIT", DEFAULT_RUN_RATE_PER_MINUTE))
    if not keys:
        log.warning("LOOM_API_KEYS is empty: every request will be refused with 401")
    store = jobs.JobStore()

    def send_webhook(record: jobs.JobRecord, view: jobs.JobView) -> tuple[bool, int, str | None]:
        payload = {
            "id": view.id,
            "job_id": view.id,
            "event": f"job.{view.status}",
            "status": view.status,
            "template_id": view.template_id,
            "output_url": view.output_url,
            "output_uri": view.output_uri,
            "error": view.error,
        }
        result = webhooks.deliver(
            record.webhook_url or "",
            payload,
            secret=secret or "",
            allowed_hosts=allowed_hosts,
            attempts=webhook_attempts,
            backoff_s=webhook_backoff_s,
        )
        return result.delivered, result.attempts, result.error

    watcher = jobs.WebhookWatcher(store, send_webhook, poll_s=webhook_poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher.resume()
        yield
        watcher.stop()

    app = FastAPI(
        title="better-loom jobs API",
        version="1",
        description="Personalized videos made by editing one recording. Send `X-API-Key`.",
        lifespan=lifespan,
    )
    app.state.api_keys = keys
    app.state.rate_limiter = RateLimiter(per_minute=rate_limit_per_minute)
    app.state.run_rate_limiter = RateLimiter(per_minute=run_rate_limit_per_minute)
    app.state.jobs = store
    app.state.watcher = watcher
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    app.state.studio_sessions = StudioSessions(keys)
    app.include_router(studio_router())

    def new_job(
        kind: str, template_id: str, who: str, run_id: str, webhook_url: str | None, output_dir: str | None = None
    ) -> jobs.JobRecord:
        record = jobs.JobRecord(
            id=run_id,
            output_dir=output_dir,
            kind=kind,  # type: ignore[arg-type]
            template_id=template_id,
            owner=who,
            created_at=dt.datetime.now(dt.timezone.utc),
            webhook_url=webhook_url,
            webhook_state="pending" if webhook_url else "none",
        )
        store.save(record)
        if webhook_url:
            watcher.watch(record)
        return record

    def check_webhook(url: str | None) -> str | None:
        if url is None:
            return None
        try:
            webhooks.check_destination(url, allowed_hosts, require_resolution=False)
        except InputError as exc:
            raise _input_error(exc) from None
        if not secret:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail="webhook_url: this server cannot sign webhooks (set LOOM_WEBHOOK_SECRET)",
            )
        return url

    def created(run_id: str) -> JSONResponse:
        body = JobCreated(id=run_id, status_url=f"/jobs/{run_id}").model_dump()
        return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED, headers={"Location": f"/jobs/{run_id}"})

    def scoped_key(who: str, given: str | None) -> str | None:
        return f"{who}:{given}" if given else None

    # pages and files a browser opens (share pages, campaign pages, signed media links): no API key
    for router in web_routers():
        app.include_router(router)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/jobs", status_code=202, response_model=JobCreated, responses={401: {}, 404: {}, 422: {}, 429: {}, 503: {}})
    def create_job(
        body: JobRequest,
        who: RunCaller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Make one personalized video: a flow run of `personalize-recipient`."""
        template = load_api_template(body.template_id)
        webhook_url = check_webhook(body.webhook_url)
        values = check_job_values(template, dict(body.model_extra or {}))
        try:
            run_id = jobs.create_run(
                recipient_deployment,
                {"template": _template_param(template.id), "data": values},
                idempotency_key=scoped_key(who, idempotency_key),
            )
        except jobs.OrchestratorUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
        new_job("recipient", template.id, who, run_id, webhook_url)
        return created(run_id)

    @app.get("/jobs/{job_id}", response_model=jobs.JobView, responses={401: {}, 404: {}, 429: {}, 503: {}})
    def get_job(job_id: str, who: Caller) -> jobs.JobView:
        """Status (scheduled, running, completed, failed), progress, output URL and error."""
        try:
            record = store.load(job_id)
        except jobs.JobNotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such job") from None
        if record.owner != who:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such job")  # other keys' jobs do not exist
        try:
            return jobs.read_job(record)
        except jobs.JobNotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such job") from None
        except jobs.OrchestratorUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None

    @app.get("/templates", response_model=list[TemplateInfo])
    def get_templates(who: Caller) -> list[TemplateInfo]:
        """Stored templates and the fields each needs."""
        return [
            TemplateInfo(
                id=t.id,
                name=t.name,
                placeholders=t.placeholders(),
                image_placeholders=sorted(t.image_keys()),
                voice_segments=len(t.voice_segments),
                visual_segments=len(t.visual_segments),
            )
            for t in list_templates()
        ]

    @app.post("/campaigns", status_code=202, response_model=JobCreated, responses={401: {}, 404: {}, 422: {}, 429: {}, 503: {}})
    def create_campaign(body: CampaignRequest, who: RunCaller) -> JSONResponse:
        """One video per row of a sheet: a flow run of `campaign`."""
        template = load_api_template(body.template_id)
        webhook_url = check_webhook(body.webhook_url)
        try:
            sheet = input_policy(template).check("sheet", body.sheet)
            check_sheet_columns(template, sheet)
        except InputError as exc:
            raise _input_error(exc) from None
        # A folder of its own per campaign job, so its manifest is found without reading the run's result.
        output_dir = storage.join(storage.home(), "outputs", "campaigns", uuid.uuid4().hex)
        parameters = {"template": _template_param(template.id), "sheet": sheet, "output_dir": output_dir}
        try:
            run_id = jobs.create_run(campaign_deployment, parameters)
        except jobs.OrchestratorUnavailable as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
        new_job("campaign", template.id, who, run_id, webhook_url, output_dir)
        return created(run_id)

    return app


def web_routers() -> list:
    from app import campaign_page, media_routes, share

    return [media_routes.router, share.router, campaign_page.router]


SHEET_CHECK_S = 15.0


def check_sheet_columns(template: Template, sheet: str, within_s: float = SHEET_CHECK_S) -> None:
    """A sheet that cannot be read, or lacks a placeholder column, fails at once (rows are checked by
    the run). Only its first rows are read, within the sheet budgets and ``within_s`` seconds."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sheet-check")
    future = pool.submit(read_sheet_head, sheet, input_policy(template))
    pool.shutdown(wait=False)  # a storage call that hangs is left to finish on its own
    try:
        head = future.result(timeout=within_s)
    except FutureTimeout:
        raise InputError("sheet", f"could not be read within {within_s:.0f} s", "check that its location is reachable") from None
    if not head.rows:
        raise InputError("sheet", "has no rows", "add one row per recipient under a header of placeholder names")
    for key in template.placeholders():
        if key not in head.columns:
            raise InputError("sheet", f"has no {key!r} column", f"add a {key} column")


def serve(host: str = "127.0.0.1", port: int = 8080) -> None:
    """What ``loom serve --port P`` runs."""
    import uvicorn  # the server only when serving: create_app is imported by tests and the CLI

    uvicorn.run(create_app(), host=host, port=port, log_level="info")

