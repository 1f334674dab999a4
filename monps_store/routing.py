"""Which database the code running now uses: the package's sync ``db``, or the database a
scope put in place for this thread or task (the async database inside ``aio.run()``, a
replica inside ``replica()``).

    token = routing.routed_to.set(adb)     # aio.run() and replica() do this
    routing.routed(db)                     # -> adb here, db elsewhere

A ContextVar: per thread and per task, so sync threads and any number of tasks use the same
model classes and the same ``monps_store.db`` at once. ``route_methods`` makes a database's
own connection and transaction methods follow it too. This module imports nothing of the
package's: every layer may ask it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterable
from typing import Any

routed_to: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "monps_store_routed_database", default=None)
# Installed by monps_store.aio while it is configured: raises AsyncBridgeRequired when called
# on a running event loop's thread (sync database code there would block the loop).
outside_bridge: Callable[[], None] | None = None


def routed(default: Any) -> Any:
    """The database for code running now: the one a scope routed to, else ``default``."""
    database = routed_to.get()
    if database is not None:
        return database
    if outside_bridge is not None:
        outside_bridge()
    return default


def route_methods(cls: type, io: Iterable[str], state: Iterable[str]) -> None:
    """Make the methods named in ``io`` and ``state`` of instances of ``cls`` whose ``routes``
    is true follow the routed database; on an event loop's thread outside the bridge, the
    ``io`` ones refuse (``outside_bridge``). Each costs one ContextVar read when not routed."""
    io = tuple(io)
    for name in (*io, *state):
        setattr(cls, name, _routed_method(getattr(cls, name), name, name in io))


def _routed_method(own: Callable, name: str, io: bool) -> Callable:
    @functools.wraps(own)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.routes:
            target = routed_to.get()
            if target is not None and target is not self:
                return getattr(target, name)(*args, **kwargs)
            if io and outside_bridge is not None:
                outside_bridge()
        return own(self, *args, **kwargs)

    return method
