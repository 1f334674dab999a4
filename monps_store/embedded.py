"""A local PostgreSQL 16 for development, the quickstart and tests (the ``embedded`` extra).

    from monps_store import embedded
    url = embedded.start()                 # starts, or reuses, the server in ./.monps/pgdata
    monps_store.init_db(url=url)

The server is `pgserver <https://pypi.org/project/pgserver/>`_: a PostgreSQL build inside a
wheel, listening on a unix socket only (nothing on the network). Data lives in
``./.monps/pgdata`` or ``$MONPS_EMBEDDED_DIR``. By default the server stops when the process that
started it exits; a server already running on the directory is reused and left running.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from monps_store.errors import EmbeddedUnavailable

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path(".monps") / "pgdata"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path``, else ``$MONPS_EMBEDDED_DIR``, else ``./.monps/pgdata``."""
    chosen = path or os.environ.get("MONPS_EMBEDDED_DIR") or DEFAULT_DIR
    return Path(chosen).expanduser().resolve()


def _pgserver():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pgserver
    except ImportError:
        raise EmbeddedUnavailable(
            "the embedded PostgreSQL needs the 'embedded' extra: "
            "pip install 'monps-store[embedded]' (Python 3.11 or 3.12), "
            "or set DATABASE_URL to use your own server"
        ) from None
    return pgserver


def server(path: str | os.PathLike | None = None, *, keep_running: bool = False):
    """The pgserver handle for the data directory, starting the server if needed."""
    pgserver = _pgserver()
    directory = data_dir(path)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pgserver.get_server(directory, cleanup_mode=None if keep_running else "stop")
    except Exception as exc:
        raise EmbeddedUnavailable(
            f"could not start the embedded PostgreSQL in {directory}: {exc} "
            f"(its log is {directory / 'log'})"
        ) from exc


def start(path: str | os.PathLike | None = None, *, keep_running: bool = False) -> str:
    """Start (or reuse) the embedded server and return its URL (unix socket, no password)."""
    srv = server(path, keep_running=keep_running)
    url = srv.get_uri()
    logger.info("embedded PostgreSQL ready in %s", data_dir(path))
    return url
