"""A PostgreSQL server of its own for the local stack (``loom up --postgres``).

Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``), a cluster in a data folder of its own,
listening on 127.0.0.1 only with ``trust`` authentication for the local user ``loom``, and a
database ``prefect`` that the Prefect server uses through asyncpg. PostgreSQL refuses to run as
root: as root, its commands run as the ``postgres`` user (made by the Debian package), which then
owns the data folder. Production points Prefect at Cloud SQL (``PREFECT_SERVER_DATABASE_CONNECTION_URL``)
or uses Prefect Cloud; this is for measuring and running real load on one machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from loom.errors import InputError

DB_USER = "loom"
DB_NAME = "prefect"
START_TIMEOUT_S = 60
# Prefect's server keeps a pool of connections per process, and the workers' flow runs add their
# own clients: the default 100 is plenty, but a fan-out test should not be the one to find out.
MAX_CONNECTIONS = 200


def postgres_bin(name: str) -> str:
    """A PostgreSQL program: on PATH, or in Debian's versioned folder (the newest version)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for folder in reversed(versions):
        if (folder / name).is_file():
            return str(folder / name)
    raise InputError(
        "--postgres", f"PostgreSQL's {name} is not installed", "install Debian's postgresql (apt-get install postgresql), or drop --postgres"
    )


def default_data_dir(prefect_home: Path) -> Path:
    """``$PREFECT_HOME/postgres``; as root, the ``postgres`` user's own folder (root's home is closed to it)."""
    if os.geteuid() == 0:
        return Path(pwd.getpwnam("postgres").pw_dir) / "loom"
    return prefect_home / "postgres"


class LocalPostgres:
    """``start`` makes the cluster if the folder has none, starts it and makes the database; ``stop`` stops it."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.url = f"postgresql+asyncpg://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"
        self._as_root = os.geteuid() == 0

    def _command(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_root else args

    def _run(self, args: list[str], what: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._command(args), capture_output=True, text=True, timeout=START_TIMEOUT_S + 30)
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL {what} failed: {(result.stderr or result.stdout).strip()[-1500:]}")
        return result

    def _make_cluster(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            account = pwd.getpwnam("postgres")
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
            probe = subprocess.run(self._command(["test", "-w", str(self.data_dir)]), capture_output=True)
            if probe.returncode != 0:
                raise InputError(
                    "--postgres-dir", f"the postgres user cannot write {self.data_dir}", "pick a folder it can reach (e.g. under /var/lib/postgresql or /tmp)"
                )
        self._run([postgres_bin("initdb"), "-D", str(self.data_dir), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-instructions"], "initdb")

    def start(self) -> LocalPostgres:
        if not (self.data_dir / "PG_VERSION").is_file():
            self._make_cluster()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} -c max_connections={MAX_CONNECTIONS}"
        self._run(
            [postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), "-o", options,
             "-w", "-t", str(START_TIMEOUT_S), "start"],
            "start",
        )  # fmt: skip
        exists = self._run(
            [postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
            "database lookup",
        )  # fmt: skip
        if exists.stdout.strip() != "1":
            self._run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DB_NAME], "createdb")
        return self

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(
                self._command([postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                capture_output=True, timeout=60,
            )  # fmt: skip
