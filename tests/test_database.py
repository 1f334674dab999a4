import logging
import threading
import time

import peewee
import pytest

import monps_store
from monps_store import errors
from tests.conftest import TEST_APP_NAME


def backend_pid(db):
    return db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def hold_connections(count, release: threading.Event):
    """Start ``count`` threads that each hold a pooled connection until ``release`` is set."""
    ready = threading.Barrier(count + 1)

    def hold():
        with monps_store.connection() as db:
            db.execute_sql("SELECT 1")
            ready.wait()
            release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    ready.wait(30)
    return threads


def test_importing_leaves_the_database_unconfigured_until_init_db(pg):
    monps_store.close_db()
    fresh = monps_store.database.MonpsDatabase(None)
    assert fresh.deferred
    with pytest.raises(errors.MonpsStoreError, match="call monps_store.init_db"):
        fresh.connect()


def test_a_scope_returns_its_connection_even_when_it_raises(db):
    for i in range(1000):
        try:
            with monps_store.connection():
                db.execute_sql("SELECT 1")
                if i % 3 == 0:
                    raise KeyError(i)
        except KeyError:
            pass
    status = monps_store.pool_status()
    assert status["in_use"] == 0
    assert status["opened"] == 1  # one connection served all 1,000 scopes


def test_nested_scopes_share_one_connection_and_only_the_outer_one_returns_it(db):
    with monps_store.connection():
        outer = backend_pid(db)
        with monps_store.connection():
            assert backend_pid(db) == outer
        assert not db.is_closed()
        assert backend_pid(db) == outer
    assert db.is_closed()
    assert monps_store.pool_status()["in_use"] == 0


def test_pool_status_counts_in_use_and_idle_and_closes_overflow_on_return(pg):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=1, max_overflow=2)
    release = threading.Event()
    threads = hold_connections(3, release)
    try:
        status = monps_store.pool_status()
        assert (status["in_use"], status["available"], status["saturated"]) == (3, 0, True)
    finally:
        release.set()
        for thread in threads:
            thread.join()
    status = monps_store.pool_status()
    assert (status["in_use"], status["idle"], status["closed_overflow"]) == (0, 1, 2)
    assert len(pg.backends()) == 1
    monps_store.close_db()


def test_an_exhausted_pool_raises_a_clear_error_after_the_timeout(pg):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=1, max_overflow=1,
                        pool_timeout=0.3)
    release = threading.Event()
    threads = hold_connections(2, release)
    try:
        with pytest.raises(errors.PoolExhausted, match=r"all 2 connections are in use.*"
                           r"DB_POOL_SIZE=1 \+ DB_MAX_OVERFLOW=1.*DB_POOL_TIMEOUT=0.3s"):
            with monps_store.connection():
                pass
        assert monps_store.pool_status()["exhausted"] == 1
    finally:
        release.set()
        for thread in threads:
            thread.join()
    assert monps_store.pool_status()["in_use"] == 0
    monps_store.close_db()


def test_a_waiting_caller_gets_a_connection_released_within_the_timeout(pg):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=1, max_overflow=0,
                        pool_timeout=10)
    release = threading.Event()
    threads = hold_connections(1, release)
    threading.Timer(0.3, release.set).start()
    with monps_store.connection() as db:
        assert db.execute_sql("SELECT 42").fetchone() == (42,)
    for thread in threads:
        thread.join()
    assert monps_store.pool_status()["exhausted"] == 0
    monps_store.close_db()


def test_saturation_is_logged_when_entered_and_left_and_checkouts_are_silent(pg, caplog):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=1, max_overflow=1)
    caplog.set_level(logging.INFO, logger="monps_store")
    for _ in range(50):
        with monps_store.connection() as db:
            db.execute_sql("SELECT 1")
    assert caplog.records == []
    release = threading.Event()
    threads = hold_connections(2, release)
    assert caplog.records == []  # every connection in use, nobody waiting: nothing to say

    def wait_for_one():
        with monps_store.connection() as db:
            db.execute_sql("SELECT 1")

    waited = threading.Thread(target=wait_for_one)
    waited.start()
    deadline = time.monotonic() + 10
    while not caplog.records and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in (*threads, waited):
        thread.join()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["connection pool saturated: all 2 connections in use, callers wait up "
                        "to DB_POOL_TIMEOUT",
                        "connection pool no longer saturated: 1 of 2 in use"]
    monps_store.close_db()


def test_reinitialising_closes_the_old_pool_and_applies_the_new_settings(pg, db):
    with monps_store.connection():
        backend_pid(db)
    assert len(pg.backends()) == 1
    monps_store.init_db(url=pg.url, application_name="monps_test_second")
    assert pg.backends() == []
    with monps_store.connection():
        assert db.execute_sql("SHOW application_name").fetchone() == ("monps_test_second",)
    monps_store.close_db()


def test_a_connection_older_than_the_recycle_age_is_replaced(pg):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_recycle=1)
    with monps_store.connection() as db:
        first = backend_pid(db)
    time.sleep(1.2)
    with monps_store.connection() as db:
        second = backend_pid(db)
    assert second != first
    status = monps_store.pool_status()
    assert (status["opened"], status["recycled"], status["in_use"]) == (2, 1, 0)
    assert pg.backends() == [second]
    # Returned after its recycle age: closed on check-in, counted once.
    with monps_store.connection():
        time.sleep(1.2)
    status = monps_store.pool_status()
    assert (status["recycled"], status["idle"]) == (2, 0)
    monps_store.close_db()


def test_application_name_and_statement_timeout_apply_to_every_connection(pg):
    monps_store.init_db(url=pg.url, application_name="monps_test_timeout", statement_timeout=100)
    with monps_store.connection() as db:
        assert db.execute_sql("SHOW statement_timeout").fetchone() == ("100ms",)
        with pytest.raises(errors.StatementTimeout, match="after DB_STATEMENT_TIMEOUT=100 ms"
                           ) as raised:
            db.execute_sql("SELECT pg_sleep(2)")
        assert raised.value.__cause__.orig.pgcode == "57014"  # the server's error, chained
        # A timeout is not a lost connection: the same connection goes on working.
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
    assert monps_store.pool_status()["lost"] == 0
    monps_store.close_db()


def test_db_echo_logs_each_statement_at_debug(pg, caplog):
    caplog.set_level(logging.DEBUG, logger="peewee")
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, echo=True)
    with monps_store.connection() as db:
        db.execute_sql("SELECT 'echo-marker'")
    assert any("echo-marker" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records if r.name == "peewee")
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, echo=False)
    assert logging.getLogger("peewee").level == logging.NOTSET
    monps_store.close_db()


def test_check_connection_is_true_on_a_live_server_and_false_instead_of_raising(pg, db):
    assert monps_store.check_connection() is True
    monps_store.init_db(url="postgresql://nobody:pw@127.0.0.1:1/none", connect_timeout=2)
    assert monps_store.check_connection() is False
    monps_store.close_db()


def test_a_refused_connection_is_a_connect_failed_error_naming_the_server():
    monps_store.init_db(url="postgresql://nobody:pw@127.0.0.1:1/none", connect_timeout=2)
    with pytest.raises(errors.ConnectFailed, match=r"cannot connect to postgresql://nobody:\*\*\*@"):
        with monps_store.connection():
            pass
    assert monps_store.pool_status()["in_use"] == 0
    monps_store.close_db()


# -- dead connections ------------------------------------------------------------------------


def test_a_killed_idle_connection_is_replaced_transparently(pg, db):
    with monps_store.connection():
        first = backend_pid(db)
    pg.terminate(first)
    with monps_store.connection():
        second = backend_pid(db)
    assert second != first
    status = monps_store.pool_status()
    assert (status["dead_discarded"], status["lost"], status["in_use"]) == (1, 0, 0)


def test_a_connection_killed_while_held_raises_connection_lost_and_is_discarded(pg, db):
    with pytest.raises(errors.ConnectionLost, match="lost the database connection") as caught:
        with monps_store.connection():
            pid = backend_pid(db)
            pg.terminate(pid)
            db.execute_sql("SELECT 1")
    assert isinstance(caught.value.__cause__, (peewee.OperationalError, peewee.InterfaceError))
    assert monps_store.pool_status()["in_use"] == 0
    with monps_store.connection():
        assert backend_pid(db) != pid
    assert monps_store.pool_status()["lost"] == 1


def test_every_statement_after_the_loss_in_the_same_transaction_raises_connection_lost(pg, db):
    seen = []
    with monps_store.connection():
        try:
            with db.atomic():
                pg.terminate(backend_pid(db))
                for _ in range(2):
                    try:
                        db.execute_sql("SELECT 1")
                    except errors.ConnectionLost as exc:
                        seen.append(type(exc))
                raise RuntimeError("leave the transaction")
        except RuntimeError:
            pass
        # Outside the transaction the next statement reconnects on its own.
        assert db.execute_sql("SELECT 1").fetchone() == (1,)
    assert seen == [errors.ConnectionLost, errors.ConnectionLost]


def test_a_killed_connection_inside_nested_savepoints_rolls_back_and_propagates(pg, db):
    with pytest.raises(errors.ConnectionLost):
        with monps_store.connection(), db.atomic():
            with db.atomic():
                with db.atomic():
                    pg.terminate(backend_pid(db))
                    db.execute_sql("SELECT 1")
    assert db.is_closed()
    assert monps_store.pool_status()["in_use"] == 0
    with monps_store.connection():
        assert db.execute_sql("SELECT 1").fetchone() == (1,)


def test_without_a_scope_the_statement_after_a_loss_reconnects(pg, db):
    pid = backend_pid(db)  # autoconnect, no scope
    pg.terminate(pid)
    with pytest.raises(errors.ConnectionLost):
        db.execute_sql("SELECT 1")
    assert backend_pid(db) != pid
    db.close()


@pytest.mark.embedded_only
def test_the_pool_recovers_after_a_full_server_restart(restartable, pg):
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=3)
    release = threading.Event()
    threads = hold_connections(3, release)
    release.set()
    for thread in threads:
        thread.join()
    assert monps_store.pool_status()["idle"] == 3

    with pytest.raises(errors.ConnectionLost):
        with monps_store.connection() as db:
            db.execute_sql("SELECT 1")
            restartable.restart()
            db.execute_sql("SELECT 1")

    for _ in range(5):
        with monps_store.connection() as db:
            assert db.execute_sql("SELECT 1").fetchone() == (1,)
    status = monps_store.pool_status()
    assert status["in_use"] == 0
    assert status["dead_discarded"] >= 3  # the held one plus the idle ones found dead
    assert len(pg.backends()) == status["idle"]
    monps_store.close_db()


def test_a_connection_left_with_autocommit_off_is_closed_instead_of_pooled(pg, db):
    # peewee's pool hands it out again like that, and the next user's INSERT never commits.
    with monps_store.connection():
        monps_store.db.connection().set_isolation_level(2)  # psycopg2: autocommit off
    with monps_store.connection():
        monps_store.db.execute_sql(
            "INSERT INTO quantum.team_quantum_dna (team_name, league) VALUES ('Lyon', 'L')")
    assert pg.sql("SELECT count(*) FROM quantum.team_quantum_dna") == [(1,)]
    assert monps_store.pool_status()["tainted_discarded"] == 1


def test_a_pool_kept_busy_says_it_is_saturated_once_not_on_every_return(pg, caplog):
    # Thirty threads on four connections: every connection that comes back goes straight out
    # again to a waiting thread. Saturation is one state, entered once and left once.
    monps_store.init_db(url=pg.url, application_name=TEST_APP_NAME, pool_size=2, max_overflow=2,
                        pool_timeout=30)
    caplog.set_level(logging.INFO, logger="monps_store")

    def busy():
        for _ in range(10):
            with monps_store.connection() as db:
                db.execute_sql("SELECT pg_sleep(0.01)")

    threads = [threading.Thread(target=busy) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == ["connection pool saturated",
                                                   "connection pool no longer saturated"]
    monps_store.close_db()
