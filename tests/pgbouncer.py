"""A real PgBouncer (Debian's package) in transaction mode in front of the test server.

    with pgbouncer_in_front_of(pg.url) as url:     # postgresql://...@127.0.0.1:PORT/db
        ...

Missing PgBouncer fails under CI (``.ci/run`` installs it) and skips, saying why, elsewhere.
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
import pytest

from monps_store import config


def require_pgbouncer() -> str:
    path = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if path is None:
        message = "PgBouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return path


@contextlib.contextmanager
def pgbouncer_in_front_of(server_url: str, pool_size: int = 5):
    binary = require_pgbouncer()
    server = config.from_url(server_url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(tempfile.mkdtemp(prefix="monps-pgbouncer-"))
    (root / "users.txt").write_text(f'"{server.user}" ""\n')
    (root / "pgbouncer.ini").write_text(f"""
[databases]
* = host={server.host} port={server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
""")
    command = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(root, "pgserver")
        for name in ("users.txt", "pgbouncer.ini"):
            shutil.chown(root / name, "pgserver")
        command = ["runuser", "-u", "pgserver", "--", *command]
    # PgBouncer logs to stderr as well as its logfile: a pipe nobody reads would fill and
    # stall it, so stderr goes to a file too.
    stderr = (root / "stderr.log").open("wb")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    url = f"postgresql://{server.user}@127.0.0.1:{port}/{server.database}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg2.connect(url, connect_timeout=2).close()
                break
            except psycopg2.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = root / "pgbouncer.log"
                    raise RuntimeError("PgBouncer did not start: " + (
                        log if log.exists() else root / "stderr.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        if process.poll() is None:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)
