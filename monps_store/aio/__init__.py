"""The same models and repositories from asyncio code (``pip install 'monps-store[async]'``).

    from monps_store import aio
    from monps_store.repositories import teams, friction

    await aio.init_db()                                  # the settings init_db() reads
    async with aio.unit_of_work(actor="api:teams", reason="rename"):
        team = await aio.run(teams.get_by_name, "Lyon")  # any sync repository function
        await aio.run(crud.update, team, league="Ligue 1")
    await aio.close_db()

There is one set of model classes and one set of repositories. ``aio.run(fn, ...)`` runs
``fn`` (ordinary sync peewee code) in peewee's greenlet bridge on the task's own asyncpg
connection, inside the task's transaction; while it runs, the models and repositories route to
the async database through a ContextVar (see ``models.base.RoutedMetadata``), so sync threads
on ``monps_store.db`` and async tasks use the same classes at the same moment. Outside
``aio.run()``, package models used directly in a coroutine (a lazy foreign key, a query built
there) raise :class:`~monps_store.errors.AsyncBridgeRequired` instead of blocking the loop on
psycopg2: load relations eagerly inside ``aio.run()``.

Errors are the sync ones: ConnectionLost, ConnectFailed, PoolExhausted, StatementTimeout,
InvalidValue, NotFound, peewee's IntegrityError. A task cancelled inside a unit of work rolls
back and gives its connection back. Importing this module imports asyncpg and greenlet;
``import monps_store`` never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from monps_store import audit, config, database, errors, routing, translate, uow
from monps_store.aio.pool import AsyncMonpsDatabase
from monps_store.aio.replicas import Replicas

if TYPE_CHECKING:
    from monps_store.aio.events import AsyncListener
    from monps_store.aio.pool import Atomic

__all__ = ["check_connection", "close_db", "connection", "init_db", "listen", "pool_status",
           "replica", "run", "unit_of_work"]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

_db: AsyncMonpsDatabase | None = None
_replicas: Replicas | None = None
# The database of this task's aio.replica() scope (a replica, or the primary read-only).
_scope_db: contextvars.ContextVar[AsyncMonpsDatabase | None] = contextvars.ContextVar(
    "monps_store_aio_scope_db", default=None)
# The task whose aio.unit_of_work() is open here. Tasks made inside it copy this ContextVar,
# but not the task's connection: their writes would escape the transaction.
_unit_task: contextvars.ContextVar[asyncio.Task | None] = contextvars.ContextVar(
    "monps_store_aio_unit_task", default=None)


def primary() -> AsyncMonpsDatabase | None:
    """The async database ``init_db()`` configured (None before it, or after ``close_db()``)."""
    return _db


def _primary() -> AsyncMonpsDatabase:
    if _db is None:
        raise errors.NotInitialised(
            "monps_store.aio is not initialised: await monps_store.aio.init_db() first")
    return _db


def _database() -> AsyncMonpsDatabase:
    """The database this task uses now: its replica() scope's, else the primary."""
    return _scope_db.get() or _primary()


def _refuse_outside_bridge() -> None:
    # Installed as routing.outside_bridge while aio is configured: sync model code on the
    # event loop's own thread, outside aio.run(), would run on psycopg2 and block the loop.
    if asyncio._get_running_loop() is not None:
        raise errors.AsyncBridgeRequired(
            "package models used directly in async code: run the code with "
            "`await aio.run(fn, *args)` (a lazy foreign key too: load it eagerly inside "
            "aio.run(), e.g. with a repository that uses with_related/prefetch)")


async def init_db(settings: config.Settings | None = None, *, url: str | None = None,
                  **overrides: Any) -> config.Settings:
    """Configure the async database as :func:`monps_store.init_db` configures the sync one
    (same settings, environment and overrides); closes a previous async pool. Opens no
    connection. Returns the settings."""
    global _db, _replicas
    if settings is None:
        settings = config.from_url(url) if url is not None else config.load_settings()
    if overrides:
        settings = database.with_overrides(settings, overrides)
    await close_db()
    _db = AsyncMonpsDatabase(settings)
    _replicas = Replicas(_db)
    routing.outside_bridge = _refuse_outside_bridge
    return settings


async def close_db(timeout: float = 10.0) -> None:
    """Close the async pool (the end of the application's lifespan). Requests in flight keep
    their connections until they are done, for at most ``timeout`` seconds; then what is still
    in use is cut off. New requests are refused meanwhile."""
    global _db, _replicas
    if _replicas is not None:
        for member in _replicas.members:
            member.db.close_timeout = timeout
        await _replicas.close()
        _replicas = None
    if _db is not None:
        _db.close_timeout = timeout
        await _db.close_pool()
        _db = None
    routing.outside_bridge = None


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[AsyncMonpsDatabase]:
    """A pooled asyncpg connection for this task, given back however the block ends. Scopes
    nest: only the outermost one takes and returns the connection."""
    adb = _database()
    opened = adb.is_closed()
    if opened:
        await adb.aconnect()
    try:
        with _on_context_stack(adb):
            yield adb
    finally:
        if opened and not adb.is_closed() and not adb.in_transaction():
            await adb.aclose()


@contextlib.contextmanager
def _on_context_stack(adb: AsyncMonpsDatabase) -> Iterator[None]:
    # A scope is recorded on the task's context stack, as the sync scope is: a
    # connection_context() inside aio.run() then leaves the connection to the scope instead
    # of closing it under the scope's feet.
    marker = object()
    adb._state.ctx.append(marker)
    try:
        yield
    finally:
        if marker in adb._state.ctx:
            adb._state.ctx.remove(marker)


@contextlib.asynccontextmanager
async def unit_of_work(actor: str | None = None, reason: str | None = None,
                       isolation_level: str | None = None) -> AsyncIterator[Atomic]:
    """One transaction (a savepoint when nested) for this task, with ``actor``/``reason`` for
    its writes; commits on a clean exit, rolls back on an exception or cancellation.
    ``isolation_level`` as :func:`monps_store.unit_of_work` takes it (outermost unit only)."""
    _check_task()
    level = uow.check_isolation_level(isolation_level, _database().in_transaction())
    async with connection() as adb:
        with audit.audit_context(actor, reason):
            async with adb.atomic(isolation_level=level) as transaction:
                token = _unit_task.set(asyncio.current_task())
                try:
                    yield transaction
                finally:
                    _unit_task.reset(token)


@contextlib.asynccontextmanager
async def replica() -> AsyncIterator[AsyncMonpsDatabase]:
    """A read-only scope for this task on a replica fit to serve, else on the primary: the
    rules of :func:`monps_store.replica` (read-your-writes by WAL position, lag limit, a
    stopped replica skipped, a write raising ReplicaWriteRefused). Nested scopes share it."""
    primary = _primary()
    current = _scope_db.get()
    if current is not None:
        yield current
        return
    if primary.in_transaction():
        raise errors.MonpsStoreError(
            "aio.replica() inside an open transaction on the primary: its reads would miss "
            "the transaction's own writes. Read before or after the unit of work")
    member = await _replicas.choose() if _replicas is not None else None
    target = member.db if member is not None else primary
    opened = target.is_closed()
    if opened:
        await target.aconnect()
    token = _scope_db.set(target)
    try:
        with _on_context_stack(target), translate.replica_scope():
            async with target.atomic():
                await target.aexecute_sql("SET TRANSACTION READ ONLY")
                yield target
    finally:
        _scope_db.reset(token)
        if (member is not None or opened) and not target.is_closed():
            await target.aclose()


async def run(fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """Run sync ``fn(*args, **kwargs)`` (a repository function, model code) on this task's
    connection, inside its transaction if one is open, and return what it returns."""
    adb = _database()
    _check_task()
    token = routing.routed_to.set(adb)
    try:
        return await adb.run(fn, *args, **kwargs)
    finally:
        routing.routed_to.reset(token)


def _check_task() -> None:
    owner = _unit_task.get()
    if owner is not None and owner is not asyncio.current_task():
        raise errors.ForeignTaskError(
            "aio.run() or aio.unit_of_work() in a task started inside another task's unit of "
            "work (asyncio.gather/create_task): that task has its own connection, outside the "
            "transaction. Await the calls one after another in the unit of work's task, or "
            "start the tasks outside it, each with a unit of work of its own")


async def check_connection() -> bool:
    """True when a round trip to the server works: :func:`monps_store.check_connection` run
    on this task's database. Never raises (logs why at WARNING)."""
    try:
        return await run(database.check_connection)
    except Exception as exc:  # by contract: any failure is a False, with the reason logged
        logger.warning("connection check failed: %s", translate.first_line(exc))
        return False


def pool_status() -> dict:
    """The async pool's figures, with the same keys as :func:`monps_store.pool_status`."""
    if _db is None:
        return {"configured": False}
    return {**_db.pool_status(), "replicas": _replicas.status() if _replicas else []}


def listen(*channels: str, timeout: float | None = None,
           on_reconnect: Callable[[], Any] | None = None) -> AsyncListener:
    """An async iterator of the events of ``channels`` (see :mod:`monps_store.aio.events`),
    on a direct connection of its own; it connects when entered or first iterated."""
    from monps_store.aio.events import AsyncListener

    settings = _db.settings if _db is not None else database.active_settings()
    return AsyncListener(channels, timeout=timeout, on_reconnect=on_reconnect,
                         settings=settings)
