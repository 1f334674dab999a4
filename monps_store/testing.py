"""A pytest plugin for code built on monps_store (registered as ``monps_store`` through the
``pytest11`` entry point: installing the package is enough).

    def test_top_teams(monps_db):                 # a migrated real database, emptied after
        crud.create(TeamQuantumDNA, team_name="Lyon", league="L1")
        with query_count() as queries, no_lazy_loads():
            rows = friction.get_high_friction_matches(70)
        assert queries.count == 1

The server: ``MONPS_TEST_DATABASE_URL`` when set (its database is migrated and its tables
emptied: never point it at data you keep); else the development server when one runs
(``monps-store embedded start``), on a database ``monps_test`` of its own, dropped at the end
and the server left running; else an embedded server of the session's own in a temporary
directory, stopped and deleted at the end (the ``embedded`` extra).

Fixtures: ``monps_server`` (session; a :class:`Server`: ``url`` of the test database,
``sql()``, ``admin()``), ``monps_db`` (the package initialised on it, ``monps_store.db``; every
table emptied after the test, the cache cleared). Helpers, usable in any test:
:func:`query_count` and :func:`no_lazy_loads`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import peewee
    import psycopg2.extensions

    from monps_store.database import MonpsDatabase

APPLICATION_NAME = "monps_test"
TEST_DATABASE = "monps_test"


class Server:
    """The test database: ``url``, and plain admin access beside the package's pool."""

    def __init__(self, url: str, pgdata: Path | None = None):
        self.url = url
        self.pgdata = pgdata  # set when this session started the server (it may restart it)

    def __repr__(self) -> str:
        from monps_store import config

        return f"<monps_store.testing.Server {config.from_url(self.url).display_url}>"

    def admin(self) -> psycopg2.extensions.connection:
        """A raw autocommit psycopg2 connection, outside the package's pool."""
        import psycopg2

        from monps_store import config

        conn = psycopg2.connect(**config.from_url(self.url).connect_params())
        conn.autocommit = True
        return conn

    def sql(self, statement: str,
            params: Sequence[object] | Mapping[str, object] = ()) -> list[tuple] | None:
        """Run one statement on its own connection; its rows, or None."""
        conn = self.admin()
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall() if cursor.description else None
        finally:
            conn.close()


def _database_url(server_url: str, name: str) -> str:
    base, _, query = server_url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def _recreate(server_url: str, name: str) -> str:
    maintenance = Server(server_url)
    maintenance.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    maintenance.sql(f'CREATE DATABASE "{name}"')
    return _database_url(server_url, name)


@contextlib.contextmanager
def throwaway_server(prefix: str = "monps-test-") -> Iterator:
    """An embedded server of its own in a new temporary directory (the pgserver handle);
    stopped and deleted when the block ends, even if it was restarted meanwhile."""
    import warnings

    from monps_store import embedded

    pgserver = embedded.load_pgserver()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            srv = pgserver.get_server(tmp / "pgdata", cleanup_mode="stop")
        try:
            yield srv
        finally:
            srv.cleanup()
            # A restart leaves pgserver's handle on the old postmaster: stop what runs now.
            embedded.stop(tmp / "pgdata")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def session_database() -> Iterator[Server]:
    """The session's test database (see the module docstring), migrated."""
    from monps_store import config, embedded
    from monps_store.migrate import Migrations

    def migrated(server: Server) -> Server:
        with Migrations.open(config.from_url(server.url)) as migrations:
            migrations.reset()
        return server

    url = os.environ.get("MONPS_TEST_DATABASE_URL")
    if url:
        yield migrated(Server(url))
        return
    running = embedded.url()
    if running:  # the developer's server: a database of our own on it, the server left alone
        name = f"{TEST_DATABASE}_{os.getpid()}"
        try:
            yield migrated(Server(_recreate(running, name)))
        finally:
            with contextlib.suppress(Exception):
                Server(running).sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    with throwaway_server() as srv:
        yield migrated(Server(_recreate(srv.get_uri(), TEST_DATABASE), Path(srv.pgdata)))


def empty_tables(server: Server) -> None:
    """Empty every table of the package's models (identities restarted)."""
    from monps_store.models import ALL_MODELS

    tables = ", ".join(f'"{m._meta.schema}"."{m._meta.table_name}"' for m in ALL_MODELS)
    server.sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def monps_server() -> Iterator[Server]:
    """The session's migrated test database (a :class:`Server`)."""
    with session_database() as server:
        yield server


@pytest.fixture
def monps_db(monps_server: Server) -> Iterator[MonpsDatabase]:
    """``monps_store.db`` initialised on the test database; every table emptied (through an
    admin connection) and the cache cleared after the test."""
    import monps_store
    from monps_store import cache

    monps_store.init_db(url=monps_server.url, application_name=APPLICATION_NAME,
                        pool_timeout=5)
    try:
        yield monps_store.db
    finally:
        monps_store.close_db()
        cache.clear()
        empty_tables(monps_server)


# -- query_count -------------------------------------------------------------------------------


@dataclass
class Queries:
    """What :func:`query_count` saw: ``count`` and the SQL of each ``statements``."""

    statements: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


def _databases() -> list:
    """Every database of the package in this process: the sync one, the async one, replicas."""
    import sys

    from monps_store import database

    found = [database.db]
    aio = sys.modules.get("monps_store.aio")  # never imported from here (asyncpg)
    if aio is not None and aio.primary() is not None:
        found.append(aio.primary())
    replicas = sys.modules.get("monps_store.replicas")
    if replicas is not None:
        found += replicas.pools()
    return found


@contextlib.contextmanager
def query_count() -> Iterator[Queries]:
    """Count the statements this thread sends through the package's databases (sync, async
    in ``aio.run()``, replicas) during the block; a raw cursor's (COPY) are not counted::

        with query_count() as queries:
            friction.get_high_friction_matches(70)
        assert queries.count == 1, queries.statements
    """
    seen = Queries()
    thread = threading.get_ident()

    def hook(event: peewee.QueryEvent) -> None:
        if threading.get_ident() == thread:
            seen.statements.append(event.sql)

    databases = _databases()
    for db in databases:
        db.query_hooks.append(hook)
    try:
        yield seen
    finally:
        for db in databases:
            with contextlib.suppress(ValueError):
                db.query_hooks.remove(hook)


# -- no_lazy_loads -----------------------------------------------------------------------------

_forbidden: contextvars.ContextVar[bool] = contextvars.ContextVar("monps_no_lazy_loads",
                                                                  default=False)
_guard_lock = threading.Lock()
_guard_installed = False


def _install_guard() -> None:
    global _guard_installed
    with _guard_lock:
        if _guard_installed:
            return
        import peewee

        from monps_store.errors import LazyLoadError

        original = peewee.ForeignKeyAccessor.get_rel_instance

        def get_rel_instance(self: peewee.ForeignKeyAccessor, instance: peewee.Model) -> Any:
            if _forbidden.get():
                value = instance.__data__.get(self.name)
                if value is not None and self.name not in instance.__rel__:
                    raise LazyLoadError(
                        f"lazy load of {type(instance).__name__}.{self.name} "
                        f"({self.rel_model.__name__} {value!r}) inside no_lazy_loads(): one "
                        "query per row; load it with the rows (a join, with_related or "
                        "prefetch)")
            return original(self, instance)

        peewee.ForeignKeyAccessor.get_rel_instance = get_rel_instance  # type: ignore[method-assign]
        _guard_installed = True


@contextlib.contextmanager
def no_lazy_loads() -> Iterator[None]:
    """A block in which reading a foreign key that was not loaded with its row (a query per
    row: the N+1 pattern) raises :class:`~monps_store.errors.LazyLoadError` naming the model
    and field, instead of querying. Applies to this thread or task only."""
    _install_guard()
    token = _forbidden.set(True)
    try:
        yield
    finally:
        _forbidden.reset(token)
