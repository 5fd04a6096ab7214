"""The ``loom`` command line.

Every command that writes a file prints its location as the last line of stdout. Bad input
prints one line naming the field and the fix to stderr and exits 2, without a traceback.
Imports are lazy so that a quick command stays quick (no Prefect import on the engine path).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

app = typer.Typer(
    name="loom",
    help="Personalized demo videos made by editing one real recording.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _err(line: str) -> None:
    typer.echo(line, err=True)


def user_errors(func: F) -> F:
    """Turn engine errors into one line and an exit code; tracebacks only with LOOM_DEBUG=1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from loom.errors import InputError, RecipientFailed, ServiceError

        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except InputError as exc:
            _err(f"error: {exc.line()}")
            raise typer.Exit(2) from None
        except (RecipientFailed, ServiceError) as exc:
            _err(f"error: {exc}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("LOOM_DEBUG"):
                raise
            _err(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (set LOOM_DEBUG=1 for details)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging(verbose: bool) -> None:
    """Rich's handler on a terminal; plain unwrapped lines where stderr goes to a file or a pipe
    (logs and CI keep whole lines, and a scripted run does not pay ~50 ms for rich's set-up)."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=_stderr_console(), show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def _spinner(text: str) -> contextlib.AbstractContextManager:
    """A status line with a spinner while ``text`` runs, on a terminal only."""
    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    return _stderr_console().status(text)


@functools.lru_cache(maxsize=1)
def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@app.callback()
def main_options(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress")] = False) -> None:
    _setup_logging(verbose)


def _read_json_file(path: str, field: str) -> dict[str, Any]:
    """A JSON object given inline (``{...}``) or as a file's path."""
    from loom import storage
    from loom.errors import InputError

    inline = path.lstrip().startswith("{")
    where = "the JSON given" if inline else path
    try:
        if inline:
            text = path
        elif not storage.exists(path):
            raise InputError(field, f"no file at {path}", "check the path")
        elif os.path.isdir(path):
            raise InputError(field, f"{path} is a folder", "give a JSON file")
        else:
            text = storage.read_bytes(path).decode("utf-8-sig")
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(field, f"{where} is not valid JSON ({exc})", "fix the JSON") from None
    except RecursionError:
        raise InputError(field, f"{where} is nested too deeply", "give a flat object of placeholder values") from None
    except ValueError as exc:  # a number of thousands of digits, among others
        raise InputError(field, f"{where} is not usable JSON ({str(exc).split(';')[0]})", "fix the JSON") from None
    if not isinstance(data, dict):
        raise InputError(field, f"{where} must hold a JSON object", 'e.g. {"client_name": "Ada"}')
    return data


def _check_port(port: int, option: str = "--port") -> None:
    from loom.errors import InputError

    if not 1 <= port <= 65535:
        raise InputError(option, f"{port} is not a port", "use a number between 1 and 65535")


def _check_out(out: str | None, folder: bool) -> None:
    """An output location that cannot be written fails before any work, naming --out."""
    from loom import storage
    from loom.errors import InputError

    if out is None or storage.is_remote(out):
        return
    path = Path(out.removeprefix("file://"))
    target = path if folder or path.is_dir() else path.parent
    if path.exists() and not path.is_dir() and folder:
        raise InputError("--out", f"{out} is a file", "give a folder for the campaign's videos")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".loom-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError("--out", f"cannot write to {target} ({exc.strerror or type(exc).__name__})", "choose a folder you can write to") from None


def _allow_local_inputs(*paths: str | None) -> None:
    """On the command line the operator's own folders hold inputs: the working directory and the
    folders of the files named, added to the input policy's roots (``loom.input_policy``)."""
    from loom.settings import configure, get_settings

    folders = [os.getcwd()] + [os.path.dirname(os.path.abspath(p)) for p in paths if p and "://" not in p]
    extra = [r for r in get_settings().allowed_roots.split(os.pathsep) if r]
    configure(allowed_roots=os.pathsep.join(dict.fromkeys(extra + folders)))


def _absolute_images(template: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Relative image paths typed on the command line are read from the working directory."""
    out = dict(values)
    for key in template.image_keys():
        value = out.get(key)
        if isinstance(value, str) and value.strip() and "://" not in value and not os.path.isabs(value.strip()):
            out[key] = os.path.abspath(value.strip())
    return out


@app.command("create-template")
@user_errors
def create_template(
    config: Annotated[str, typer.Option("--config", help="Template JSON (the seed's format)")],
    prepare: Annotated[bool, typer.Option(help="Prepare it now (probe, mezzanine, tracks, faces)")] = True,
) -> None:
    """Validate a template, store it under its id and prepare it."""
    from loom.authoring import store_template
    from loom.template import load_template

    template = load_template(config)
    with _spinner(f"preparing template {template.id}") if prepare else contextlib.nullcontext():
        stored = store_template(template, prepare=prepare)
    for warning in stored.warnings:
        _err(f"warning: {warning}")
    typer.echo(f"template {template.id} stored")
    typer.echo(stored.uri)


@app.command()
@user_errors
def personalize(
    template: Annotated[str, typer.Option("--template", help="Template id or path to its JSON")],
    data: Annotated[str, typer.Option("--data", help="JSON object of placeholder values")],
    out: Annotated[str | None, typer.Option("--out", help="Output .mp4 (or folder)")] = None,
) -> None:
    """Make one personalized video (no Prefect server needed)."""
    from loom.pipeline import check_configured_backend
    from loom.pipeline import personalize as run
    from loom.template import load_template

    check_configured_backend()  # before anything is read: a missing plugin is named first
    _check_out(out, folder=False)
    values = _read_json_file(data, "data")
    _allow_local_inputs(None if data.lstrip().startswith("{") else data)
    tpl = load_template(template)
    with _spinner("personalizing"):
        result = run(tpl, _absolute_images(tpl, values), out)
    for warning in result.warnings:
        _err(f"warning: {warning}")
    if result.preview_uri:
        typer.echo(f"preview: {result.preview_uri}")
    if result.links.get("share"):
        typer.echo(f"share page: {result.links['share']} (served by `loom serve` / `loom up`)")
    typer.echo(result.output_uri)


@app.command()
@user_errors
def campaign(
    template: Annotated[str, typer.Option("--template", help="Template id or path to its JSON")],
    sheet: Annotated[str, typer.Option("--sheet", help="CSV or XLSX (local, gs://, https://)")],
    out: Annotated[str | None, typer.Option("--out", help="Output folder")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=16, help="Recipients made at once")] = 2,
    prefect: Annotated[
        bool | None, typer.Option("--prefect/--no-prefect", help="Run as a Prefect flow (default: when PREFECT_API_URL is set)")
    ] = None,
) -> None:
    """Make one video per sheet row; writes manifest.csv in the output folder."""
    _check_out(out, folder=True)
    _allow_local_inputs(sheet)
    if "://" not in sheet:
        sheet = os.path.abspath(sheet)
    use_prefect = prefect if prefect is not None else bool(os.environ.get("PREFECT_API_URL"))
    if use_prefect:
        manifest = _campaign_with_prefect(template, sheet, out, concurrency)
        typer.echo(manifest)
        return
    from rich.progress import Progress

    from loom.campaign import plan_campaign, run_campaign_locally
    from loom.pipeline import template_version
    from loom.template import load_template

    tpl = load_template(template)
    plan = plan_campaign(tpl, template_version(tpl), sheet, out)
    for warning in plan.warnings:
        _err(f"warning: {warning}")
    for entry in plan.entries:
        if entry.status in ("invalid", "duplicate"):
            _err(f"row {entry.row.number}: {entry.status}: {entry.error}")
    with Progress(console=_stderr_console(), transient=True) as progress:
        bar = progress.add_task("recipients", total=len(plan.to_make))
        run_campaign_locally(plan, concurrency, on_progress=lambda e: progress.advance(bar))
    for entry in plan.entries:
        if entry.status == "failed":
            _err(f"row {entry.row.number}: failed: {entry.error}")
        elif entry.status in ("done", "skipped"):
            typer.echo(entry.output_uri)
    typer.echo(plan.summary())
    from loom.campaign import campaign_id
    from loom.links import campaign_page_url

    typer.echo(f"campaign page: {campaign_page_url(campaign_id(plan.output_dir))}")
    typer.echo(plan.manifest_uri)


def _campaign_with_prefect(template: str, sheet: str, out: str | None, concurrency: int) -> str:
    from flows.campaign import campaign as campaign_flow

    result = campaign_flow(template=template, sheet=sheet, output_dir=out, concurrency=concurrency)
    return str(getattr(result, "manifest_uri", result))


@app.command("clone-voice")
@user_errors
def clone_voice(
    name: Annotated[str, typer.Option("--name", help="Name of the new voice")],
    files: Annotated[list[str], typer.Argument(help="Audio files of the presenter speaking")],
) -> None:
    """Clone a voice with ElevenLabs (needs ELEVENLABS_API_KEY); prints the voice id last."""
    from loom.voice.speech import clone_voice as run

    typer.echo(run(name, files))


@app.command()
@user_errors
def lipsync(
    video: Annotated[str, typer.Option("--video", help="Video with a face")],
    audio: Annotated[str, typer.Option("--audio", help="Speech to sync the mouth to")],
    out: Annotated[str, typer.Option("--out", help="Output video")],
    checkpoint: Annotated[str | None, typer.Option("--checkpoint", help="Wav2Lip checkpoint (.pth)")] = None,
) -> None:
    """Lip-sync one clip to an audio file with the configured backend (LOOM_LIPSYNC_BACKEND, default wav2lip)."""
    from loom.lipsync.clips import lipsync_whole_clip

    report = lipsync_whole_clip(video, audio, out, checkpoint=checkpoint)
    for warning in report.get("warnings", []) or []:
        _err(f"warning: {warning}")
    typer.echo(out)


@app.command()
@user_errors
def plugins() -> None:
    """List the installed lip-sync backends and visual effects (entry points better_loom.*)."""
    from loom.plugins import plugin_list

    rows = plugin_list()
    width = max((len(r.name) for r in rows), default=4)
    for r in rows:
        typer.echo(f"{r.name:<{width}}  {r.group:<19}  {r.package} {r.version}  ({r.target})")


@app.command()
@user_errors
def serve(
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to bind")] = "127.0.0.1",
) -> None:
    """Run the jobs API (POST /jobs, GET /jobs/{id}), the signed media links, share pages (/v/<token>)
    and campaign pages; talks to PREFECT_API_URL. Links point at LOOM_PUBLIC_URL (default port 8080)."""
    _check_port(port)
    import uvicorn

    from app.api import create_app

    _err(f"serving on http://{host}:{port} (links written by workers point at LOOM_PUBLIC_URL)")
    uvicorn.run(create_app(), host=host, port=port, log_level="info")


@app.command()
@user_errors
def up(
    port: Annotated[int, typer.Option("--port", help="Prefect server port")] = 4200,
    web_port: Annotated[int, typer.Option("--web-port", help="Port of the web server: jobs API, media links, share and campaign pages")] = 8080,
    postgres: Annotated[
        bool, typer.Option("--postgres", help="Prefect's database on a local PostgreSQL (Debian's postgresql) instead of SQLite")
    ] = False,
    postgres_dir: Annotated[
        str | None, typer.Option("--postgres-dir", help="PostgreSQL's data folder (default $PREFECT_HOME/postgres)")
    ] = None,
) -> None:
    """Start the local stack: Prefect server, pools, provider limits, deployments, workers and the web
    server. Ctrl-C stops it."""
    _check_port(port)
    _check_port(web_port, "--web-port")
    from app.stack import run_stack

    run_stack(port=port, web_port=web_port, postgres=postgres, postgres_dir=Path(postgres_dir) if postgres_dir else None)


@app.command("revoke-share")
@user_errors
def revoke_share(token: Annotated[str, typer.Argument(help="The last part of a share link (/v/<token>)")]) -> None:
    """Stop a share page from showing its video (it answers 410 from now on)."""
    from loom.shares import revoke_share as revoke

    share = revoke(token)
    typer.echo(f"revoked the share of {share.output_uri} for {share.recipient}")


@app.command()
@user_errors
def demo(
    out: Annotated[str, typer.Option("--out", help="Folder for the demo's files")] = "demo-output",
    rows: Annotated[int, typer.Option(min=1, max=10, help="Recipients in the demo sheet")] = 3,
) -> None:
    """Make a base recording, a template and a sheet, run the campaign, write contact sheets."""
    from loom.demo import run_demo

    result = run_demo(Path(out), rows=rows, console=_stderr_console())
    for video in result.videos:
        typer.echo(video)
    typer.echo(str(result.folder))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
