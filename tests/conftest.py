"""Every test runs against a real PostgreSQL.

The database comes from the package's own pytest plugin (``monps_store.testing``, fixtures
``monps_server`` and ``monps_db``): ``MONPS_TEST_DATABASE_URL`` when set, else a running
development server (``monps-store embedded start``, left running), else an embedded server
started for the session in a temporary directory and deleted at the end.

Isolation: each test that uses ``db`` gets the package initialised on the test database and, at
teardown, the pool closed and the project's tables emptied. Emptying tables (rather than wrapping
each test in a transaction that is rolled back) keeps tests honest for code that opens its own
connection scopes and transactions, runs threads or starts other processes.
"""

from __future__ import annotations

import os

import pytest

from monps_store import testing
from monps_store.models import ALL_MODELS

TEST_APP_NAME = "monps_test"


class Server(testing.Server):
    """The test database (from the package's pytest plugin, ``monps_server``), with the admin
    operations fault tests need."""

    @property
    def can_restart(self) -> bool:
        return self.pgdata is not None  # a server this session started

    def terminate(self, pid: int) -> None:
        assert self.sql("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]

    def backends(self, application_name: str = TEST_APP_NAME) -> list[int]:
        rows = self.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND pid <> pg_backend_pid()", (application_name,))
        return [pid for (pid,) in rows]

    def restart(self) -> None:
        """Stop the whole server (fast shutdown: every backend is cut off) and start it again."""
        from pgserver._commands import pg_ctl

        user = "pgserver" if os.geteuid() == 0 else None  # as pgserver runs it under root
        pg_ctl(["-w", "-m", "fast", "-l", str(self.pgdata / "log"), "restart"],
               pgdata=self.pgdata, user=user, timeout=60)


throwaway_server = testing.throwaway_server


@pytest.fixture(scope="session")
def pg(monps_server):
    return Server(monps_server.url, monps_server.pgdata)


@pytest.fixture(scope="session")
def tables(pg):
    """The project's tables (the plugin has run the migrations on the test database)."""
    return [f'"{m._meta.schema}"."{m._meta.table_name}"' for m in ALL_MODELS]


@pytest.fixture
def empty_database(pg, request):
    """The URL of a new, empty database (dropped afterwards), for tests that change the schema."""
    name = "monps_scratch_" + request.node.name.lower().translate(
        {ord(c): "_" for c in "[]-.:/ "})[:40]
    pg.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.sql(f'CREATE DATABASE "{name}"')
    base, _, query = pg.url.partition("?")
    yield base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    pg.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(pg, tables, monps_db):
    """The package initialised on the test database (the plugin's ``monps_db``: tables emptied
    and the cache cleared afterwards)."""
    return monps_db


@pytest.fixture
def restartable(pg):
    if not pg.can_restart:
        pytest.skip("restarting the server needs the embedded server (MONPS_TEST_DATABASE_URL set)")
    return pg
