"""Every test runs against a real PostgreSQL.

``MONPS_TEST_DATABASE_URL`` names a server to use; otherwise one embedded server (pgserver) is
started for the whole session in a temporary directory and deleted at the end.

Isolation: each test that uses ``db`` gets the package initialised on the test database and, at
teardown, the pool closed and the project's tables emptied. Emptying tables (rather than wrapping
each test in a transaction that is rolled back) keeps tests honest for code that opens its own
connection scopes and transactions, runs threads or starts other processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import psycopg2
import pytest

import monps_store
from monps_store import config
from monps_store.models import ALL_MODELS

TEST_APP_NAME = "monps_test"


class Server:
    """The PostgreSQL the tests run against, with the admin operations fault tests need."""

    def __init__(self, url: str, pgserver=None):
        self.url = url
        self._pgserver = pgserver

    @property
    def can_restart(self) -> bool:
        return self._pgserver is not None

    def admin(self):
        """A raw autocommit psycopg2 connection, outside the package's pool."""
        conn = psycopg2.connect(**config.from_url(self.url).connect_params())
        conn.autocommit = True
        return conn

    def sql(self, statement: str, params=()):
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

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

        srv = self._pgserver
        pg_ctl(["-w", "-m", "fast", "-l", str(srv.log), "restart"],
               pgdata=srv.pgdata, user=srv.system_user, timeout=60)


def _create_test_database(url: str) -> str:
    """A fresh ``monps_test`` database on the embedded server; returns its URL."""
    conn = psycopg2.connect(**config.from_url(url).connect_params())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS monps_test")
        cur.execute("CREATE DATABASE monps_test")
    conn.close()
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/monps_test" + (f"?{query}" if query else "")


@contextlib.contextmanager
def throwaway_server(prefix: str):
    """An embedded server (pgserver) of its own in a new temporary directory; stopped and
    deleted when the block ends."""
    from monps_store import embedded

    pgserver = embedded._pgserver()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srv = pgserver.get_server(tmp / "pgdata", cleanup_mode="stop")
    try:
        yield srv
    finally:
        srv.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg():
    url = os.environ.get("MONPS_TEST_DATABASE_URL")
    if url:
        yield Server(url)
        return
    with throwaway_server("monps-test-") as srv:
        yield Server(_create_test_database(srv.get_uri()), srv)


@pytest.fixture(scope="session")
def tables(pg):
    """The project's schemas and tables, built once by running the migrations."""
    from monps_store.migrate import Migrations

    with Migrations.open(config.from_url(pg.url)) as migrations:
        migrations.reset()
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
def db(pg, tables):
    """The package initialised on the test database; tables emptied afterwards."""
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_timeout=5)
    yield monps_store.db
    monps_store.close_db()
    # Through an admin connection: the test may have left the package misconfigured.
    pg.sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def restartable(pg):
    if not pg.can_restart:
        pytest.skip("restarting the server needs the embedded server (MONPS_TEST_DATABASE_URL set)")
    return pg
