"""``loom up``: the whole local stack in one command.

A Prefect server (SQLite in ``$PREFECT_HOME``, or with ``--postgres`` PostgreSQL in a data folder of
its own: ``app.local_postgres``) on 127.0.0.1, the work pools ``cpu`` and ``gpu`` (process pools
here; Cloud Run in production, see ``deployments/``), the providers' global concurrency limits
(``elevenlabs``, ``synclabs``, ``gpu-lipsync``), the deployments from ``prefect.yaml``, one worker
per pool, and the web server (``loom serve``: the jobs API, signed media links, share and campaign
pages, the studio) whose address the workers put in every link they write (``LOOM_PUBLIC_URL``).
Ctrl-C or SIGTERM stops all of it. Tests start the same stack through ``LocalStack``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx

from app.local_postgres import LocalPostgres, default_data_dir
from loom.errors import InputError
from loom.provider_slots import slots_in_environment

PROJECT_DIR = Path(__file__).resolve().parent.parent
POOLS = ("cpu", "gpu")
SERVER_START_TIMEOUT_S = 90


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect_cli() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _loom_cli() -> list[str]:
    return [sys.executable, "-m", "app.cli"]


class LocalStack:
    """Server, pools, deployments and workers as child processes; ``stop`` ends them all."""

    def __init__(
        self, port: int = 4200, env: dict[str, str] | None = None, log_dir: Path | None = None, web_port: int | None = None,
        postgres: bool = False, postgres_dir: Path | None = None,
    ) -> None:
        for name, value in (("port", port), ("web-port", web_port)):
            if value is not None and not 1 <= value <= 65535:
                raise InputError(name, f"{value} is not a TCP port", "use 1024-65535")
        self.port = port
        self.web_port = web_port if web_port is not None else free_port()
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.ui_url = f"http://127.0.0.1:{port}"
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {**os.environ, **(env or {})}
        # links written by the workers point at this stack's web server
        self.env.setdefault("LOOM_PUBLIC_URL", self.web_url)
        # Workers ask for new runs every 5 s instead of 10: a local stack should feel responsive.
        self.env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "5")
        self.env.update(
            {
                "PREFECT_API_URL": self.api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_API_URL": self.api_url,
                "LOOM_PROJECT_DIR": str(PROJECT_DIR),
                "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_DIR), self.env.get("PYTHONPATH", "")) if p),
            }
        )
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.postgres: LocalPostgres | None = None
        if postgres:
            home = Path(self.env.get("PREFECT_HOME") or Path.home() / ".prefect")
            self.postgres = LocalPostgres(postgres_dir or default_data_dir(home), free_port())

    # -- lifecycle

    def start(self) -> LocalStack:
        if not port_is_free(self.port):
            raise InputError("port", f"{self.port} is already in use", "pick another with --port")
        if not port_is_free(self.web_port):
            raise InputError("web-port", f"{self.web_port} is already in use", "pick another with --web-port")
        try:
            if self.postgres is not None:
                self.postgres.start()
                self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.postgres.url
            self._spawn("server", ["server", "start", "--host", "127.0.0.1", "--port", str(self.port)])
            self._spawn("web", ["serve", "--host", "127.0.0.1", "--port", str(self.web_port)], command=_loom_cli())
            self.wait_healthy()
            self.wait_web()
            self.create_pools()
            self.create_provider_limits()
            self.deploy()
            for pool in POOLS:
                self.start_worker(pool)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, pool: str) -> None:
        self._spawn(f"worker-{pool}", ["worker", "start", "--pool", pool, "--type", "process"])

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a crash, as far as Prefect can tell)."""
        proc = self.processes.pop(name)
        _signal_tree(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def _spawn(self, name: str, args: list[str], command: list[str] | None = None) -> None:
        out: int | object = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115  (closed when the process ends)
        self.processes[name] = subprocess.Popen(
            [*(command or _prefect_cli()), *args],
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its flow-run children
        )

    def wait_healthy(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        self._wait_for("server", "the Prefect server", f"{self.api_url}/health", timeout, every_s=0.5)

    def wait_web(self, timeout: float = SERVER_START_TIMEOUT_S) -> None:
        self._wait_for("web", "the web server", f"{self.web_url}/health", timeout, every_s=0.3)

    def _wait_for(self, name: str, what: str, health_url: str, timeout: float, every_s: float) -> None:
        """Until ``health_url`` answers 200; an error naming ``what`` if its process exits first or time runs out."""
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with code {process.returncode} (see its log)")
            try:
                if httpx.get(health_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(every_s)
        raise RuntimeError(f"{what} did not answer on {health_url.removesuffix('/health')} within {timeout:.0f} s")

    def create_pools(self) -> None:
        """Process pools ``cpu`` and ``gpu``; existing pools are kept as they are."""
        from prefect.workers.process import ProcessWorker  # the worker machinery only when pools are made

        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            for pool in POOLS:
                if client.get(f"/work_pools/{pool}").status_code == 200:
                    continue
                base = ProcessWorker.get_default_base_job_template()
                resp = client.post("/work_pools/", json={"name": pool, "type": "process", "base_job_template": base})
                resp.raise_for_status()

    def create_provider_limits(self) -> dict[str, int]:
        """The providers' global concurrency limits (``elevenlabs``, ``synclabs``, ``gpu-lipsync``),
        sized by the stack's ``LOOM_TTS_CONCURRENCY`` ...; an existing one is resized to match."""
        sizes = slots_in_environment(self.env)
        with httpx.Client(base_url=self.api_url, timeout=30) as client:
            for name, limit in sizes.items():
                found = client.get(f"/v2/concurrency_limits/{name}")
                if found.status_code == 404:
                    client.post("/v2/concurrency_limits/", json={"name": name, "limit": limit}).raise_for_status()
                elif found.raise_for_status().json()["limit"] != limit:
                    client.patch(f"/v2/concurrency_limits/{name}", json={"limit": limit}).raise_for_status()
        return sizes

    def deploy(self) -> None:
        """``prefect deploy --all`` from ``prefect.yaml`` in the project folder."""
        result = subprocess.run(
            [*_prefect_cli(), "--no-prompt", "deploy", "--all"],
            cwd=PROJECT_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"prefect deploy failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")

    def stop(self) -> None:
        """SIGTERM to each process group (workers first, then the server), SIGKILL after a grace period."""
        for name in sorted(self.processes, key=lambda n: n == "server"):
            proc = self.processes[name]
            if proc.poll() is None:
                _signal_tree(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_tree(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.processes.clear()
        if self.postgres is not None:
            self.postgres.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- while running

    def dead_process(self) -> str | None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                return name
        return None


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc). Workers start flow runs in new sessions, so a
    signal to the worker's process group alone would leave its runs going."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            stack.append(child)
    return found


def _signal_tree(pid: int, sig: int) -> None:
    """Send ``sig`` to a process's group and to every process below it."""
    targets = _descendants(pid)
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    for child in targets:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass


def run_stack(port: int = 4200, web_port: int = 8080, postgres: bool = False, postgres_dir: Path | None = None) -> None:
    """Start the local stack, print the UI URL and block until Ctrl-C or SIGTERM, then stop it all."""
    stack = LocalStack(port=port, web_port=web_port, postgres=postgres, postgres_dir=postgres_dir)
    stopping = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        database = f"PostgreSQL in {stack.postgres.data_dir}" if stack.postgres else "SQLite"
        print(f"starting Prefect on {stack.ui_url} ({database}; pools: {', '.join(POOLS)})", file=sys.stderr)
        stack.start()
        print("deployments: personalize-recipient, campaign, wav2lip; Ctrl-C stops the stack", file=sys.stderr)
        print(f"videos, share pages and campaign pages: {stack.web_url} (jobs API docs at {stack.web_url}/docs)", file=sys.stderr)
        print(stack.ui_url, flush=True)
        while not stopping.wait(1.0):
            dead = stack.dead_process()
            if dead:
                print(f"{dead} exited; stopping the stack", file=sys.stderr)
                break
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
