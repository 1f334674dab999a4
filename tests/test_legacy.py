"""Legacy psycopg2 code and monps_store in one transaction, written as a legacy script would be:
raw psycopg2.connect, cursors, monps_store calls, then commit or rollback."""

import threading

import psycopg2
import pytest

import monps_store
from monps_store import config, legacy
from monps_store.errors import LegacyConnectionError
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud, teams

RAW_TEAM = ("INSERT INTO quantum.team_quantum_dna (team_name, league, matches_played, "
            "total_bets, win_rate, roi, total_pnl) VALUES (%s, 'L', 0, 0, 0, 0, 0)")


@pytest.fixture
def legacy_conn(pg, db):
    conn = psycopg2.connect(**config.from_url(pg.url).connect_params())
    yield conn
    conn.close()


def team_names(pg):
    return [n for (n,) in pg.sql("SELECT team_name FROM quantum.team_quantum_dna ORDER BY 1")]


# -- legacy code lends its connection ----------------------------------------------------------


def test_legacy_commit_decides_both_kinds_of_writes(pg, legacy_conn):
    cur = legacy_conn.cursor()
    cur.execute(RAW_TEAM, ("Raw",))
    with legacy.use_connection(legacy_conn):
        crud.create(TeamQuantumDNA, team_name="Orm", league="L")
        assert teams.get_by_name("Raw").league == "L"  # sees the legacy write
    assert team_names(pg) == []  # nothing visible to another session before the commit
    legacy_conn.commit()
    assert team_names(pg) == ["Orm", "Raw"]


def test_legacy_rollback_undoes_both_kinds_of_writes(pg, legacy_conn):
    legacy_conn.cursor().execute(RAW_TEAM, ("Raw",))
    with legacy.use_connection(legacy_conn):
        with monps_store.unit_of_work(actor="legacy-script"):
            crud.create(TeamQuantumDNA, team_name="Orm", league="L")
    legacy_conn.rollback()
    assert team_names(pg) == []


def test_a_failing_unit_of_work_inside_is_a_savepoint_undoing_only_its_part(pg, legacy_conn):
    legacy_conn.cursor().execute(RAW_TEAM, ("Raw",))
    with legacy.use_connection(legacy_conn):
        with pytest.raises(RuntimeError):
            with monps_store.unit_of_work():
                crud.create(TeamQuantumDNA, team_name="Undone", league="L")
                raise RuntimeError("inner failure")
        crud.create(TeamQuantumDNA, team_name="Kept", league="L")
    legacy_conn.commit()
    assert team_names(pg) == ["Kept", "Raw"]


def test_lending_touches_neither_the_connection_nor_the_pool(pg, legacy_conn):
    before = monps_store.pool_status()
    with legacy.use_connection(legacy_conn):
        crud.create(TeamQuantumDNA, team_name="Orm", league="L")
        assert monps_store.db.connection() is legacy_conn
    assert monps_store.pool_status() == before  # nothing opened, checked out or returned
    assert not legacy_conn.closed
    assert legacy_conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    assert monps_store.db.is_closed()  # the thread's monps_store state is as it was
    legacy_conn.commit()
    assert team_names(pg) == ["Orm"]


def test_other_threads_keep_using_the_pool_while_a_connection_is_lent(pg, legacy_conn):
    legacy_pid = legacy_conn.get_backend_pid()
    seen = []

    def other():
        with monps_store.connection() as db:
            seen.append(db.execute_sql("SELECT pg_backend_pid()").fetchone()[0])

    with legacy.use_connection(legacy_conn):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen and seen[0] != legacy_pid
    legacy_conn.rollback()


@pytest.mark.parametrize("spoil,message", [
    (lambda c: c.close(), "the connection is closed"),
    (lambda c: setattr(c, "autocommit", True), "autocommit mode"),
    (lambda c: c.cursor().execute("SELECT * FROM no_such_table"), "transaction is aborted"),
])
def test_a_connection_that_cannot_be_joined_is_refused_clearly(legacy_conn, spoil, message):
    try:
        spoil(legacy_conn)
    except psycopg2.Error:
        pass
    with pytest.raises(LegacyConnectionError, match=message):
        with legacy.use_connection(legacy_conn):
            pass


def test_lending_inside_an_open_scope_is_refused(legacy_conn):
    with monps_store.connection():
        with pytest.raises(LegacyConnectionError, match="inside an open monps_store"):
            with legacy.use_connection(legacy_conn):
                pass


# -- legacy code borrows a pooled connection -------------------------------------------------


def test_a_borrowed_connection_shares_the_unit_of_work_transaction(pg, db):
    with monps_store.unit_of_work(actor="mixed"):
        crud.create(TeamQuantumDNA, team_name="Orm", league="L")
        with legacy.borrow_connection() as conn:
            conn.cursor().execute(RAW_TEAM, ("Raw",))
        assert team_names(pg) == []
    assert team_names(pg) == ["Orm", "Raw"]


def test_an_exception_in_the_unit_of_work_rolls_back_the_borrowed_writes_too(pg, db):
    with pytest.raises(RuntimeError):
        with monps_store.unit_of_work():
            with legacy.borrow_connection() as conn:
                conn.cursor().execute(RAW_TEAM, ("Raw",))
            raise RuntimeError("late failure")
    assert team_names(pg) == []


@pytest.mark.parametrize("method", ["commit", "rollback"])
def test_commit_or_rollback_on_a_shared_borrowed_connection_is_an_error(db, method):
    with monps_store.unit_of_work():
        with legacy.borrow_connection() as conn:
            with pytest.raises(LegacyConnectionError, match=f"{method}\\(\\) on a connection "
                               "borrowed inside a unit of work"):
                getattr(conn, method)()


def test_outside_a_unit_of_work_a_borrow_is_its_own_transaction(pg, db):
    with legacy.borrow_connection() as conn:
        conn.cursor().execute(RAW_TEAM, ("First",))
        conn.commit()  # means what psycopg2 code expects: committed now
        assert team_names(pg) == ["First"]
        conn.cursor().execute(RAW_TEAM, ("Second",))
        conn.rollback()
        conn.cursor().execute(RAW_TEAM, ("Third",))
    assert team_names(pg) == ["First", "Third"]
    with pytest.raises(RuntimeError):
        with legacy.borrow_connection() as conn:
            conn.cursor().execute(RAW_TEAM, ("Fourth",))
            raise RuntimeError
    assert team_names(pg) == ["First", "Third"]
    assert monps_store.pool_status()["in_use"] == 0


def test_changing_autocommit_or_closing_a_borrowed_connection_is_refused(db):
    with legacy.borrow_connection() as conn:
        with pytest.raises(LegacyConnectionError, match="cannot set 'autocommit'"):
            conn.autocommit = False
        with pytest.raises(LegacyConnectionError, match="set_session"):
            conn.set_session(readonly=True)
        with pytest.raises(LegacyConnectionError, match="the pool owns it"):
            conn.close()


def test_a_connection_whose_session_was_changed_is_never_handed_out_again(pg, db):
    with legacy.borrow_connection() as conn:
        conn.cursor().execute("SET statement_timeout = 5")
        changed_pid = conn.get_backend_pid()
    status = monps_store.pool_status()
    assert (status["tainted_discarded"], status["idle"]) == (1, 0)
    with monps_store.connection() as db_:
        pid, timeout = db_.execute_sql(
            "SELECT pg_backend_pid(), current_setting('statement_timeout')").fetchone()
    assert pid != changed_pid and timeout == "0"
    with legacy.borrow_connection() as conn:
        conn.cursor().execute("SELECT 1")  # an untouched session goes back to the pool
    assert monps_store.pool_status()["tainted_discarded"] == 1
