"""Who writes, and why: the audit context every write path reads.

    with audit_context(actor="cron:odds", reason="nightly import"):
        ...                                   # saves, bulk inserts and updates record it

The context lives in a ``contextvars.ContextVar``: nested scopes override what they set and
inherit the rest; a thread started inside a scope does *not* see it unless it is started
explicitly with the context, e.g. ``threading.Thread(target=audit.bind(work))``.

With no actor set, :func:`default_actor` is recorded, never NULL:
``<application name>:<os user>@<host>:<script>``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import getpass
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class AuditInfo:
    actor: str
    reason: str | None


_current: contextvars.ContextVar[AuditInfo | None] = contextvars.ContextVar(
    "monps_audit", default=None)


@functools.cache
def _process_identity() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return f"{user}@{socket.gethostname()}:{script}"


def default_actor() -> str:
    """``<application name>:<os user>@<host>:<script>`` for writes made outside any context."""
    from monps_store.database import active_settings  # late: audit is imported by the models

    settings = active_settings()
    app = settings.application_name if settings else "monps_store"
    return f"{app}:{_process_identity()}"


def current() -> AuditInfo:
    """The audit information in force here (the default actor and no reason outside a scope)."""
    info = _current.get()
    return info if info is not None else AuditInfo(default_actor(), None)


@contextlib.contextmanager
def audit_context(actor: str | None = None, reason: str | None = None) -> Iterator[AuditInfo]:
    """Set the actor and/or reason for writes inside the block; unset ones are inherited."""
    if actor is not None and not str(actor).strip():
        raise ValueError("audit actor must not be blank")
    outer = _current.get()
    info = AuditInfo(
        actor if actor is not None else (outer.actor if outer else default_actor()),
        reason if reason is not None else (outer.reason if outer else None),
    )
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)


def bind(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` wrapped to run in a copy of the current context (to hand audit info to a thread)."""
    context = contextvars.copy_context()
    return functools.wraps(fn)(lambda *args, **kwargs: context.run(fn, *args, **kwargs))


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def insert_values(timestamp: datetime.datetime | None = None) -> dict:
    """Audit and timestamp column values for a new row (bulk insert paths)."""
    info, ts = current(), timestamp or now()
    return {"created_at": ts, "updated_at": ts, "created_by": info.actor,
            "updated_by": info.actor, "change_reason": info.reason}


# The columns update_values() fills: what every write path refreshes on a changed row.
UPDATE_COLUMNS = ("updated_at", "updated_by", "change_reason")


def update_values(timestamp: datetime.datetime | None = None) -> dict:
    """Audit and timestamp column values for a changed row (update queries, upserts)."""
    info = current()
    return {"updated_at": timestamp or now(), "updated_by": info.actor,
            "change_reason": info.reason}
