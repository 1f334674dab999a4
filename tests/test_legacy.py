"""Legacy psycopg2 code and monps_store in one transaction, written as a legacy script would be:
raw psycopg2.connect, cursors, monps_store calls, then commit or rollback."""

import io
import threading
from decimal import Decimal

import psycopg2
import psycopg2.extras
import psycopg2.pool
import pytest

import monps_store
from monps_store import config, legacy
from monps_store.errors import LegacyConnectionError
from monps_store.models import Odds, TeamQuantumDNA
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


def test_after_commit_on_a_lent_connection_is_refused_rather_than_dropped(legacy_conn):
    with legacy.use_connection(legacy_conn):
        with monps_store.unit_of_work():
            with pytest.raises(LegacyConnectionError, match=r"after conn.commit\(\)"):
                monps_store.db.after_commit(lambda: None)
    legacy_conn.rollback()


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


# -- legacy connections as legacy code makes them ----------------------------------------------

FACTORIES = [psycopg2.extras.RealDictCursor, psycopg2.extras.DictCursor,
             psycopg2.extras.NamedTupleCursor]


def legacy_connect(pg, **kwargs):
    return psycopg2.connect(**config.from_url(pg.url).connect_params(), **kwargs)


def orm_round_trip():
    """What a legacy script asks of monps_store on its connection: a create, a lookup by
    natural key, a count and a listing, each checked against what was written."""
    with monps_store.unit_of_work(actor="legacy"):
        created = crud.create(TeamQuantumDNA, team_name="Orm", league="L",
                              market_dna={"edge": 1}, roi=Decimal("4.250"))
    assert created.id is not None
    found = teams.get_by_name("Orm")
    assert (found.id, found.market_dna, str(found.roi)) == (created.id, {"edge": 1}, "4.250")
    assert crud.count(TeamQuantumDNA, team_name="Orm") == 1
    assert "Orm" in [t.team_name for t in crud.get_all(TeamQuantumDNA)]
    return created


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_a_connection_with_any_cursor_factory_can_be_lent(pg, db, factory):
    conn = legacy_connect(pg, cursor_factory=factory)
    try:
        with legacy.use_connection(conn):
            created = orm_round_trip()
        cur = conn.cursor()  # the legacy code's own cursors are as they were
        assert isinstance(cur, factory)
        cur.execute("SELECT id, team_name FROM quantum.team_quantum_dna")
        row = cur.fetchone()
        assert (row["id"] if factory is not psycopg2.extras.NamedTupleCursor else row.id) \
            == created.id
        conn.commit()
    finally:
        conn.close()
    assert team_names(pg) == ["Orm"]


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_legacy_cursors_with_their_own_factory_keep_working_around_a_loan(pg, db, factory):
    conn = legacy_connect(pg)
    try:
        cur = conn.cursor(cursor_factory=factory)
        cur.execute(RAW_TEAM, ("Raw",))
        with legacy.use_connection(conn):
            orm_round_trip()
        cur.execute("SELECT team_name FROM quantum.team_quantum_dna ORDER BY 1")
        assert [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                for r in cur.fetchall()] == [("Orm",), ("Raw",)]
        assert isinstance(cur, factory)
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("factory", [psycopg2.extras.RealDictConnection,
                                     psycopg2.extras.DictConnection,
                                     psycopg2.extras.NamedTupleConnection],
                         ids=lambda f: f.__name__)
def test_a_connection_of_a_dict_or_namedtuple_connection_class_can_be_lent(pg, db, factory):
    conn = legacy_connect(pg, connection_factory=factory)
    try:
        with legacy.use_connection(conn):
            orm_round_trip()
        assert type(conn.cursor()) is not psycopg2.extensions.cursor  # still its own factory
        conn.commit()
    finally:
        conn.close()
    assert team_names(pg) == ["Orm"]


def test_a_logging_connection_can_be_lent_and_logs_only_the_legacy_statements(pg, db):
    logged = io.StringIO()
    conn = legacy_connect(pg, connection_factory=psycopg2.extras.LoggingConnection)
    conn.initialize(logged)
    try:
        conn.cursor().execute(RAW_TEAM, ("Raw",))
        with legacy.use_connection(conn):
            orm_round_trip()
        conn.commit()
    finally:
        conn.close()
    assert team_names(pg) == ["Orm", "Raw"]
    assert "INSERT INTO quantum.team_quantum_dna" in logged.getvalue()
    assert "SAVEPOINT" not in logged.getvalue()


def test_a_connection_from_a_psycopg2_pool_goes_back_in_the_state_it_had(pg, db):
    params = config.from_url(pg.url).connect_params()
    pool = psycopg2.pool.ThreadedConnectionPool(1, 1, **params)
    try:
        conn = pool.getconn()
        conn.cursor().execute("SET search_path TO public")
        conn.commit()

        def state(c):
            with c.cursor() as cur:
                cur.execute("SHOW search_path")
                search_path = cur.fetchone()[0]
            c.rollback()
            return (c.autocommit, c.isolation_level, c.cursor_factory, c.closed,
                    c.get_transaction_status(), search_path, dict(c.string_types or {}))

        before = state(conn)
        with legacy.use_connection(conn):
            orm_round_trip()
        conn.commit()
        assert state(conn) == before
        pool.putconn(conn)
        again = pool.getconn()
        assert again is conn and state(again) == before
        pool.putconn(again)
    finally:
        pool.closeall()
    assert team_names(pg) == ["Orm"]


def test_a_named_cursor_opened_before_a_loan_is_fetched_after_it(pg, legacy_conn):
    named = legacy_conn.cursor("legacy_batch")
    named.execute("SELECT g FROM generate_series(1, 500) AS g")
    assert [g for (g,) in named.fetchmany(10)] == list(range(1, 11))
    with legacy.use_connection(legacy_conn):
        orm_round_trip()
        with pytest.raises(RuntimeError):
            with monps_store.unit_of_work():  # a savepoint rolled back under the cursor
                crud.create(TeamQuantumDNA, team_name="Undone", league="L")
                raise RuntimeError
    assert [g for (g,) in named.fetchall()] == list(range(11, 501))
    named.close()
    legacy_conn.commit()
    assert team_names(pg) == ["Orm"]


@pytest.fixture
def legacy_typecasters():
    """Typecasters that legacy code registers for the whole process, undone afterwards."""
    ext = psycopg2.extensions
    decimal_to_float = ext.new_type(ext.DECIMAL.values, "DEC2FLOAT",
                                    lambda value, cur: None if value is None else float(value))
    ext.register_type(decimal_to_float)
    psycopg2.extras.register_default_jsonb(globally=True, loads=lambda text: {"legacy": text})
    yield
    for typecaster in (ext.DECIMAL, ext.JSONB, ext.JSONBARRAY):
        ext.register_type(typecaster)


def test_typecasters_registered_globally_by_legacy_code_do_not_change_the_models(
        pg, legacy_conn, legacy_typecasters):
    with legacy.use_connection(legacy_conn):
        orm_round_trip()  # exact Decimal digits and plain JSON values on a lent connection
        cur = legacy_conn.cursor()
        cur.execute("SELECT roi, market_dna FROM quantum.team_quantum_dna")
        assert cur.fetchone() == (4.25, {"legacy": '{"edge": 1}'})  # the legacy code's casters
    legacy_conn.commit()
    team = teams.get_by_name("Orm")  # and on the package's own pooled connections
    assert (str(team.roi), team.market_dna) == ("4.250", {"edge": 1})
    with legacy.borrow_connection() as conn:  # legacy cursor code keeps its casters there
        cur = conn.cursor()
        cur.execute("SELECT roi FROM quantum.team_quantum_dna")
        assert cur.fetchone() == (4.25,)


def test_with_conn_blocks_around_a_loan_commit_or_roll_back_both_kinds_of_writes(pg, db):
    conn = legacy_connect(pg)
    try:
        with conn:
            conn.cursor().execute(RAW_TEAM, ("Raw",))
            with legacy.use_connection(conn):
                orm_round_trip()
        assert team_names(pg) == ["Orm", "Raw"]
        with pytest.raises(RuntimeError):
            with conn:
                conn.cursor().execute(RAW_TEAM, ("Raw2",))
                with legacy.use_connection(conn):
                    crud.create(TeamQuantumDNA, team_name="Orm2", league="L")
                raise RuntimeError
        assert team_names(pg) == ["Orm", "Raw"]
    finally:
        conn.close()


def test_a_legacy_search_path_does_not_change_what_the_models_reach(pg, legacy_conn):
    cur = legacy_conn.cursor()
    cur.execute("SET search_path TO pg_catalog")  # no schema of the package's on the path
    with legacy.use_connection(legacy_conn):
        orm_round_trip()
        assert crud.count(Odds) == 0
    cur.execute("SHOW search_path")
    assert cur.fetchone() == ("pg_catalog",)
    legacy_conn.commit()
    assert team_names(pg) == ["Orm"]


def test_a_call_outside_any_scope_does_not_stop_a_later_loan(pg, legacy_conn):
    assert teams.get_by_league("L") == []  # peewee autoconnects and keeps the connection
    assert monps_store.pool_status()["in_use"] == 1
    with legacy.use_connection(legacy_conn):
        assert monps_store.pool_status()["in_use"] == 0  # given back before the loan
        orm_round_trip()
    legacy_conn.commit()
    assert team_names(pg) == ["Orm"]
