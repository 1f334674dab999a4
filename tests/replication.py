"""A real primary and hot standby for the replica tests, built with the PostgreSQL 16 binaries
that pgserver ships: ``initdb`` a primary on 127.0.0.1, ``pg_basebackup -R`` a streaming
standby from it, both run as the server's non-root user when the tests run as root.

    with primary_and_standby() as pair:
        pair.primary_url, pair.standby_url
        pair.pause_replay(); pair.resume_replay(); pair.stop_standby(); pair.start_standby()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2

from monps_store import testing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pair:
    def __init__(self, root: Path, bin_dir: Path, user: str | None, options: str = ""):
        self.root, self.bin, self.user, self.options = root, bin_dir, user, options
        self.primary_dir, self.standby_dir = root / "primary", root / "standby"
        self.primary_port, self.standby_port = _free_port(), _free_port()

    def _run(self, *args, check=True):
        command = [str(self.bin / args[0]), *map(str, args[1:])]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def url(self, port: int) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @property
    def primary_url(self) -> str:
        return self.url(self.primary_port)

    @property
    def standby_url(self) -> str:
        return self.url(self.standby_port)

    def sql(self, url: str, statement: str, params=()):
        return testing.Server(url).sql(statement, params)

    def _start(self, data: Path, port: int) -> None:
        self._run("pg_ctl", "-D", data, "-w", "-l", data / "server.log",
                  "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {self.root} {self.options}",
                  "start")

    def build(self) -> None:
        self._run("initdb", "-D", self.primary_dir, "-U", "postgres", "--auth=trust")
        self._start(self.primary_dir, self.primary_port)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", self.primary_port, "-U", "postgres",
                  "-D", self.standby_dir, "-R", "-X", "stream", "-c", "fast", "-C", "-S",
                  "standby1")
        self.start_standby()

    def start_standby(self) -> None:
        self._start(self.standby_dir, self.standby_port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg2.OperationalError):
                if self.sql(self.standby_url, "SELECT pg_is_in_recovery()") == [(True,)]:
                    return
            time.sleep(0.1)
        raise RuntimeError("the standby did not come up")

    def stop_standby(self) -> None:
        self._run("pg_ctl", "-D", self.standby_dir, "-w", "-m", "fast", "stop")

    def pause_replay(self) -> None:
        self.sql(self.standby_url, "SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.sql(self.standby_url, "SELECT pg_wal_replay_resume()")

    def wait_replayed(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        (target,) = self.sql(self.primary_url, "SELECT pg_current_wal_lsn()")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql(self.standby_url, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                        (target,)) == [(True,)]:
                return
            time.sleep(0.05)
        raise RuntimeError("the standby did not catch up")

    def stop(self) -> None:
        for data in (self.standby_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", data, "-w", "-m", "immediate", "stop", check=False)


@contextlib.contextmanager
def primary_and_standby(options: str = ""):
    """``options``: extra server options for both, e.g. ``"-c max_connections=300"``."""
    from monps_store import embedded

    pgserver = embedded.load_pgserver()
    bin_dir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    root = Path(tempfile.mkdtemp(prefix="monps-replica-"))
    user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: pgserver's own user runs it
        user = "pgserver"
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
        shutil.chown(root, user)
        root.chmod(0o700)
    pair = Pair(root, bin_dir, user, options)
    try:
        pair.build()
        yield pair
    finally:
        pair.stop()
        shutil.rmtree(root, ignore_errors=True)
