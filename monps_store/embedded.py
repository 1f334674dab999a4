"""A local PostgreSQL 16 for development, the quickstart and tests (the ``embedded`` extra).

    from monps_store import embedded
    url = embedded.start()                 # starts, or reuses, the server in ./.monps/pgdata
    monps_store.init_db(url=url)

The server is `pgserver <https://pypi.org/project/pgserver/>`_: a PostgreSQL build inside a
wheel, listening on a unix socket only (nothing on the network). Data lives in
``./.monps/pgdata`` or ``$MONPS_EMBEDDED_DIR``. By default the server stops when the process that
started it exits; a server already running on the directory is reused and left running, so
a long-lived one (``monps-store embedded start``, or ``start(keep_running=True)``) serves
every command, the Python API (``monps-store embedded url``) and the test suite until
``monps-store embedded stop``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from monps_store.errors import EmbeddedUnavailable

if TYPE_CHECKING:
    from pgserver import PostgresServer
    from pgserver.utils import PostmasterInfo

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path(".monps") / "pgdata"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path``, else ``$MONPS_EMBEDDED_DIR``, else ``./.monps/pgdata``."""
    chosen = path or os.environ.get("MONPS_EMBEDDED_DIR") or DEFAULT_DIR
    return Path(chosen).expanduser().resolve()


def described(path: str | os.PathLike | None = None) -> str:
    """The data directory and what chose it, for messages: the default depends on the working
    directory, which is easy to miss when a command runs from another one."""
    if path:
        return str(data_dir(path))
    if os.environ.get("MONPS_EMBEDDED_DIR"):
        return f"{data_dir()} (from MONPS_EMBEDDED_DIR)"
    return (f"{data_dir()} (./{DEFAULT_DIR.as_posix()} in the working directory; "
            "MONPS_EMBEDDED_DIR chooses another)")


def load_pgserver() -> ModuleType:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver
    except ImportError:
        if sys.version_info >= (3, 13):
            # The extra's marker skips pgserver there: installing it again changes nothing.
            raise EmbeddedUnavailable(
                f"the embedded PostgreSQL (pgserver) has no build for Python "
                f"{sys.version_info.major}.{sys.version_info.minor}, so the 'embedded' extra "
                "installs nothing here: use Python 3.11 or 3.12, or set DATABASE_URL to a "
                "server of your own") from None
        raise EmbeddedUnavailable(
            "the embedded PostgreSQL needs the 'embedded' extra: "
            "pip install 'monps-store[embedded]' (Python 3.11 or 3.12), "
            "or set DATABASE_URL to use your own server"
        ) from None
    return pgserver


def _running_info(directory: Path) -> PostmasterInfo | None:
    """pgserver's reading of ``postmaster.pid`` when a server runs on ``directory``, else None."""
    if not (directory / "postmaster.pid").exists():
        return None
    load_pgserver()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(directory)
    return info if info is not None and info.is_running() else None


def url(path: str | os.PathLike | None = None) -> str | None:
    """The URL of the server running on the data directory, or None if none runs there."""
    info = _running_info(data_dir(path))
    return info.get_uri() if info is not None else None


def status(path: str | os.PathLike | None = None) -> dict | None:
    """``{"data_dir", "pid", "url", "started"}`` of the server running there, else None."""
    directory = data_dir(path)
    info = _running_info(directory)
    if info is None:
        return None
    return {"data_dir": str(directory), "pid": info.pid, "url": info.get_uri(),
            "started": info.start_time.isoformat(timespec="seconds")}


def server(path: str | os.PathLike | None = None, *, keep_running: bool = False,
           on_create: Callable[[Path], object] | None = None) -> PostgresServer:
    """The pgserver handle for the data directory, starting the server if needed. A server that
    was already running is left running when this process exits, whatever ``keep_running``:
    only the process that started a server (without ``keep_running``) stops it.
    ``on_create(directory)`` is called first when a new cluster is about to be created there."""
    pgserver = load_pgserver()
    directory = data_dir(path)
    directory.parent.mkdir(parents=True, exist_ok=True)
    reuse = _running_info(directory) is not None
    if on_create is not None and not (directory / "PG_VERSION").is_file():
        on_create(directory)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pgserver.get_server(
                directory, cleanup_mode=None if keep_running or reuse else "stop")
    except Exception as exc:
        raise EmbeddedUnavailable(
            f"could not start the embedded PostgreSQL in {directory}: {exc} "
            f"(its log is {directory / 'log'})"
        ) from exc


def start(path: str | os.PathLike | None = None, *, keep_running: bool = False,
          on_create: Callable[[Path], object] | None = None) -> str:
    """Start (or reuse) the embedded server and return its URL (unix socket, no password).
    With ``keep_running`` it outlives this process (``monps-store embedded start``); stop it
    with :func:`stop`. ``on_create``: as for :func:`server`."""
    srv = server(path, keep_running=keep_running, on_create=on_create)
    uri = srv.get_uri()
    logger.info("embedded PostgreSQL ready in %s", data_dir(path))
    return uri


def stop(path: str | os.PathLike | None = None) -> bool:
    """Stop the server running on the data directory (fast shutdown: sessions are cut off);
    False if none was running."""
    directory = data_dir(path)
    if _running_info(directory) is None:
        return False
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # not re-exported

    # As root, pgserver runs the server as its own "pgserver" system user.
    user = "pgserver" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=directory, user=user)
    except Exception as exc:
        if _running_info(directory) is not None:
            raise EmbeddedUnavailable(f"could not stop the embedded PostgreSQL in {directory}: "
                                      f"{exc} (its log is {directory / 'log'})") from exc
    return True
