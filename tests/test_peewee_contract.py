"""Peewee's documented behaviours of its pool, connections, transactions, signals and
exceptions, run against ``monps_store.db`` and a plain ``PooledPostgresqlDatabase`` on the same
server in the same test: each test reads "behaves as Peewee does", or names the documented
difference (docs/ARCHITECTURE.md, "Where the package differs from Peewee").

Both databases are configured alike, through peewee's own deferred initialisation
(``database.init(name, **params)``), so ``monps_store.db`` is exercised exactly as code written
against Peewee would use it.
"""

from __future__ import annotations

import threading
import time

import peewee
import pytest
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase
from playhouse.signals import Model as SignalsModel
from playhouse.signals import post_save, pre_save

import monps_store
from monps_store import config, errors, events
from monps_store.database import MonpsDatabase
from monps_store.models import TeamQuantumDNA
from monps_store.repositories import crud

SCRATCH = "public.peewee_contract_rows"


def peewee_params(url: str, **extra) -> tuple[str, dict]:
    params = config.from_url(url).connect_params()
    params.pop("options", None)
    return params.pop("dbname"), params | extra


@pytest.fixture
def scratch(pg, db):
    pg.sql(f"CREATE TABLE {SCRATCH} (id serial PRIMARY KEY, v integer UNIQUE, note text)")
    yield
    pg.sql(f"DROP TABLE {SCRATCH}")


@pytest.fixture
def pair(pg, db, scratch):
    """A plain peewee pool and ``monps_store.db``, both set up with ``init(name, **params)``."""
    made = []

    def make(**extra):
        name, params = peewee_params(pg.url, **extra)
        plain = PooledPostgresqlDatabase(None)
        plain.init(name, **params)
        monps_store.db.init(None)  # forget the test settings: start as new, as `plain` does
        monps_store.db.init(name, **params)
        made.append(plain)
        return plain, monps_store.db

    yield make
    for plain in made:
        plain.close_all()


def count_rows(database) -> int:
    return database.execute_sql(f"SELECT count(*) FROM {SCRATCH}").fetchone()[0]


def insert(database, v, note=None):
    database.execute_sql(f"INSERT INTO {SCRATCH} (v, note) VALUES (%s, %s)", (v, note))


def in_thread(fn):
    """Run ``fn`` in a new thread and return what it returned (or raise what it raised)."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the calling thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box.get("value")


# -- connections -------------------------------------------------------------------------------


def test_connect_returns_true_and_a_second_connect_is_an_operational_error_not_a_failure(pair):
    for database in pair():
        assert database.is_closed()
        assert database.connect() is True
        with pytest.raises(peewee.OperationalError, match="Connection already opened") as again:
            database.connect()
        # A programming error, not a connectivity failure: cron.job does not retry it.
        assert not isinstance(again.value, errors.ConnectionLost)
        assert database.connect(reuse_if_open=True) is False
        assert database.close() is True
        assert database.close() is False
        assert database.is_closed()


def test_a_closed_connection_goes_back_to_the_pool_and_is_handed_out_again(pair):
    for database in pair(max_connections=2):
        database.connect()
        first = database.connection()
        database.close()
        database.connect()
        assert database.connection() is first
        database.close()


def test_connection_context_nests_and_only_the_outermost_closes(pair):
    for database in pair():
        with database.connection_context():
            conn = database.connection()
            with database.connection_context():
                assert database.connection() is conn
            assert not database.is_closed()
        assert database.is_closed()

        @database.connection_context()
        def decorated(database=database):
            return database.execute_sql("SELECT 1").fetchone()

        assert decorated() == (1,)
        assert database.is_closed()


def test_closing_inside_a_transaction_is_refused(pair):
    for database in pair():
        with database.atomic():
            with pytest.raises(peewee.OperationalError, match="transaction is open"):
                database.close()
        database.close()


def test_every_thread_has_its_own_connection_unless_thread_safe_is_false(pg, db):
    name, params = peewee_params(pg.url)
    for cls in (PooledPostgresqlDatabase, MonpsDatabase):
        shared = cls(name, thread_safe=False, **params)
        per_thread = cls(name, **params)
        try:
            for database in (shared, per_thread):
                database.connect()
            assert in_thread(shared.is_closed) is False, cls
            assert in_thread(shared.connection) is shared.connection()
            assert in_thread(per_thread.is_closed) is True, cls
        finally:
            shared.close_all()
            per_thread.close_all()


def test_a_deferred_database_refuses_to_connect_with_an_interface_error(pg):
    for database in (PooledPostgresqlDatabase(None), MonpsDatabase(None)):
        with pytest.raises(peewee.InterfaceError):
            database.connect()
    with pytest.raises(errors.NotInitialised, match=r"init_db\(\)"):
        MonpsDatabase(None).connect()


# -- the pool ----------------------------------------------------------------------------------


def test_an_exhausted_pool_without_a_timeout_raises_max_connections_exceeded_at_once(pair):
    for database in pair(max_connections=1):
        database.connect()
        with pytest.raises(MaxConnectionsExceeded):
            in_thread(database.connect)
        database.close()


def waiting_for_a_connection(database) -> threading.Thread:
    """A thread that connects (waiting as the pool says), records it, and closes."""

    def wait():
        database.connect()
        thread.served = True
        database.close()

    thread = threading.Thread(target=wait)
    thread.served = False
    thread.start()
    return thread


def test_an_exhausted_pool_with_a_timeout_waits_then_raises_or_serves_a_freed_connection(pair):
    for database in pair(max_connections=1, timeout=1):
        database.connect()
        with pytest.raises(MaxConnectionsExceeded):
            in_thread(database.connect)
        waiter = waiting_for_a_connection(database)
        time.sleep(0.2)
        database.close()  # frees the only connection: the waiter gets it
        waiter.join(10)
        assert waiter.served


def test_timeout_zero_waits_for_a_connection_however_long_it_takes(pair):
    for database in pair(max_connections=1, timeout=0):
        database.connect()
        waiter = waiting_for_a_connection(database)
        time.sleep(1.5)  # longer than the pool's one-second wait step
        assert not waiter.served
        database.close()
        waiter.join(10)
        assert waiter.served


def test_difference_db_pool_timeout_zero_fails_at_once(pg, db):
    # Documented difference: in init_db() / DB_POOL_TIMEOUT, 0 means "do not wait" (peewee's
    # timeout=0 waits forever; db.init(timeout=0) keeps peewee's meaning, see above).
    monps_store.init_db(url=pg.url, pool_size=1, max_overflow=0, pool_timeout=0)
    monps_store.db.connect()
    with pytest.raises(errors.PoolExhausted, match="DB_POOL_TIMEOUT=0s") as exhausted:
        in_thread(monps_store.db.connect)
    assert isinstance(exhausted.value, MaxConnectionsExceeded)
    monps_store.db.close()


def test_stale_connections_are_replaced_after_stale_timeout(pair):
    for database in pair(stale_timeout=1):
        database.connect()
        first = database.connection()
        database.close()
        time.sleep(1.1)
        database.connect()
        assert database.connection() is not first
        database.close()


def test_manual_close_close_idle_and_close_all(pair):
    for database in pair(max_connections=3):
        database.connect()
        first = database.connection()
        database.manual_close()  # closed, not returned to the pool
        assert first.closed
        database.connect()
        second = database.connection()
        database.close()
        database.close_idle()
        assert second.closed
        database.connect()
        third = database.connection()
        database.close_all()
        assert third.closed
        assert database.is_closed()


def test_difference_init_db_keeps_only_pool_size_idle_connections(pg, db):
    # Documented difference: peewee keeps every returned connection idle (up to
    # max_connections); init_db() keeps DB_POOL_SIZE and closes the overflow ones.
    # (db.init(max_connections=N) keeps all N, as peewee does.)
    monps_store.init_db(url=pg.url, pool_size=1, max_overflow=2)
    barrier = threading.Barrier(3)

    def hold():
        with monps_store.connection():
            barrier.wait(10)

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    status = monps_store.pool_status()
    assert (status["idle"], status["closed_overflow"], status["in_use"]) == (1, 2, 0)


# -- transactions ------------------------------------------------------------------------------


def test_atomic_commits_rolls_back_and_nests_as_savepoints(pair):
    for database in pair():
        with database.atomic():
            insert(database, 1)
            with pytest.raises(RuntimeError):
                with database.atomic():
                    insert(database, 2)
                    raise RuntimeError
            insert(database, 3)
        with pytest.raises(RuntimeError):
            with database.atomic():
                insert(database, 4)
                raise RuntimeError
        assert [v for (v,) in database.execute_sql(
            f"SELECT v FROM {SCRATCH} ORDER BY v").fetchall()] == [1, 3]
        database.execute_sql(f"DELETE FROM {SCRATCH}")
        database.close()


def test_with_database_is_a_connection_and_a_transaction(pair):
    for database in pair():
        with pytest.raises(RuntimeError):
            with database:
                assert database.in_transaction()
                insert(database, 1)
                raise RuntimeError
        assert database.is_closed()
        with database:
            insert(database, 2)
        assert database.is_closed()
        assert count_rows(database) == 1
        database.execute_sql(f"DELETE FROM {SCRATCH}")
        database.close()


def test_transaction_objects_commit_and_roll_back_explicitly(pair):
    for database in pair():
        with database.transaction() as txn:
            insert(database, 1)
            txn.commit()
            insert(database, 2)
            txn.rollback()
        with database.manual_commit():
            database.begin()
            insert(database, 3)
            database.rollback()
        assert count_rows(database) == 1

        @database.atomic()
        def decorated(database=database):
            insert(database, 4)

        decorated()
        assert count_rows(database) == 2
        calls = []
        with database.atomic():
            database.after_commit(lambda calls=calls: calls.append("committed"))
            assert calls == []
        assert calls == ["committed"]
        database.execute_sql(f"DELETE FROM {SCRATCH}")
        database.close()


def test_a_failed_statement_in_autocommit_leaves_the_connection_usable(pair):
    for database in pair():
        with pytest.raises(peewee.ProgrammingError):
            database.execute_sql("SELEC 1")
        assert database.is_connection_usable()
        assert database.execute_sql("SELECT 1").fetchone() == (1,)
        database.close()


# -- exceptions --------------------------------------------------------------------------------


def test_a_repeated_unique_key_is_an_integrity_error(pair):
    for database in pair():
        insert(database, 1)
        with pytest.raises(peewee.IntegrityError):
            insert(database, 1)
        database.execute_sql(f"DELETE FROM {SCRATCH}")
        database.close()


@pytest.mark.parametrize("statement, params", [
    ("SELECT 1 / 0", ()),                              # 22012 division by zero
    ("SELECT %s::integer", ("twelve",)),               # 22P02 invalid text representation
    (f"INSERT INTO {SCRATCH} (v) VALUES (%s)", (2 ** 40,)),  # 22003 out of range
])
def test_a_value_the_server_refuses_is_a_data_error(pair, statement, params):
    for database in pair():
        with pytest.raises(peewee.DataError):
            database.execute_sql(statement, params)
        database.close()
    with pytest.raises(errors.InvalidValue) as refused:
        monps_store.db.execute_sql(statement, params)
    assert isinstance(refused.value, ValueError)
    assert isinstance(refused.value, errors.InvalidInput)


def test_a_statement_timeout_is_an_operational_error(pair):
    for database in pair(options="-c statement_timeout=50"):
        with pytest.raises(peewee.OperationalError, match="statement timeout"):
            database.execute_sql("SELECT pg_sleep(2)")
        database.close()
    with pytest.raises(errors.StatementTimeout):
        monps_store.db.execute_sql("SELECT pg_sleep(2)")


def test_a_connection_killed_in_autocommit_is_an_operational_error(pg, pair):
    plain, ours = pair()
    for database in (plain, ours):
        database.connect()
        pg.terminate(database.connection().get_backend_pid())
        with pytest.raises(peewee.OperationalError) as lost:
            database.execute_sql("SELECT 1")
        database.close()
        assert database._in_use == {}  # the dead connection is not pooled
    assert isinstance(lost.value, errors.ConnectionLost)  # the package's own, for ours


def test_a_connection_killed_inside_connection_context_is_left_cleanly(pg, pair):
    plain, ours = pair()
    for database in (plain, ours):
        with database.connection_context():
            database.execute_sql("SELECT 1")
            pg.terminate(database.connection().get_backend_pid())
            with pytest.raises(peewee.OperationalError):
                database.execute_sql("SELECT 1")
            if database is plain:
                # peewee keeps the dead connection: every later statement fails.
                with pytest.raises(peewee.InterfaceError, match="connection already closed"):
                    database.execute_sql("SELECT 1")
            else:
                # Documented difference: the package discards it and reconnects.
                assert database.execute_sql("SELECT 1").fetchone() == (1,)
        assert database.is_closed()
        assert database._in_use == {}
    assert monps_store.pool_status()["in_use"] == 0


def test_a_connection_killed_inside_with_database_is_given_up_when_the_block_is_left(pg, pair):
    for database in pair():
        with pytest.raises(peewee.PeeweeException):
            with database:
                insert(database, 1)
                pg.terminate(database.connection().get_backend_pid())
                insert(database, 2)
        assert database.is_closed()
        assert database._in_use == {}
        assert count_rows(database) == 0
        database.close()


def test_a_connection_killed_in_a_transaction_fails_every_statement_until_it_is_left(pg, pair):
    plain, ours = pair()
    for database in (plain, ours):
        with pytest.raises(peewee.PeeweeException) as left:
            with database.atomic():
                insert(database, 1)
                pg.terminate(database.connection().get_backend_pid())
                with pytest.raises(peewee.OperationalError):
                    insert(database, 2)
                with pytest.raises(peewee.PeeweeException):
                    insert(database, 3)
        if database is plain:
            # peewee: the failed ROLLBACK's InterfaceError masks the original error.
            assert isinstance(left.value, peewee.InterfaceError)
        else:
            # Documented difference: the ROLLBACK is skipped and the caller sees the truth.
            assert isinstance(left.value, errors.ConnectionLost)
        database.close()
        assert count_rows(database) == 0
        database.close()


# -- deferred initialisation -------------------------------------------------------------------


def test_init_configures_a_complete_pool(pg, db):
    name, params = peewee_params(pg.url)
    monps_store.db.init(name, max_connections=2, **params)
    status = monps_store.pool_status()
    assert (status["configured"], status["max_connections"], status["pool_size"]) == (True, 2, 2)
    for _ in range(2):
        with monps_store.connection():
            pass
    assert monps_store.pool_status()["idle"] == 1  # kept, not closed on return
    with monps_store.connection():  # the first connection, held by this thread

        def second_then_third():
            monps_store.db.connect()  # the second, held by this thread
            try:
                return in_thread(monps_store.db.connect)  # a third: none left
            finally:
                monps_store.db.close()

        with pytest.raises(errors.PoolExhausted, match="all 2 connections") as exhausted:
            in_thread(second_then_third)
    assert isinstance(exhausted.value, MaxConnectionsExceeded)


def test_init_with_a_server_that_refuses_raises_connect_failed_naming_it(pg, db):
    name, params = peewee_params(pg.url)
    monps_store.db.init(name, **(params | {"host": "127.0.0.1", "port": 1}))
    with pytest.raises(errors.ConnectFailed, match="127.0.0.1:1") as failed:
        monps_store.db.connect()
    assert isinstance(failed.value, peewee.OperationalError)


def test_init_refuses_parameters_libpq_does_not_know(pg, db):
    name, params = peewee_params(pg.url)
    with pytest.raises(errors.ConfigError, match="isolation_levle"):
        monps_store.db.init(name, isolation_levle="serializable", **params)


def test_init_names_the_peewee_options_it_does_not_take(pg, db):
    name, params = peewee_params(pg.url)
    with pytest.raises(errors.ConfigError, match="encoding: a peewee option"):
        monps_store.db.init(name, encoding="LATIN1", **params)


def test_init_again_merges_into_the_parameters_it_had_as_peewee_does(pg, pair):
    name, _params = peewee_params(pg.url)
    for database in pair():
        database.init(name, max_connections=3, stale_timeout=60)  # host, user, port: kept
        with database.connection_context():
            assert database.execute_sql("SELECT 1").fetchone() == (1,)
        assert (database._max_connections, database._stale_timeout) == (3, 60)
    settings = monps_store.db.settings
    assert (settings.pool_size, settings.max_overflow, settings.pool_recycle) == (3, 0, 60)


def test_init_after_init_db_keeps_the_environments_connection_and_pool(pg, db):
    before = monps_store.db.settings
    monps_store.db.init(before.database, timeout=7)
    after = monps_store.db.settings
    assert (after.host, after.port, after.user, after.pool_size, after.max_overflow) == (
        before.host, before.port, before.user, before.pool_size, before.max_overflow)
    assert after.pool_timeout == 7
    assert monps_store.check_connection()


def test_init_with_a_url_replaces_the_whole_connection(pg, db):
    monps_store.db.init("monps", host="db.invalid", port=6543, sslmode="require")
    monps_store.db.init(pg.url)
    settings = monps_store.db.settings
    assert ("sslmode", "require") not in settings.params and settings.host != "db.invalid"
    assert monps_store.check_connection()


def isolation(database):
    with database.atomic():
        return database.execute_sql("SHOW transaction_isolation").fetchone()[0]


def test_init_with_an_isolation_level_begins_every_transaction_at_it_as_peewee_does(pg, pair):
    name, params = peewee_params(pg.url)
    for database in pair(isolation_level="SERIALIZABLE"):
        assert isolation(database) == "serializable"
        with database.atomic():  # a nested block is a savepoint of the same transaction
            with database.atomic():
                level = database.execute_sql("SHOW transaction_isolation").fetchone()[0]
        assert level == "serializable"
        assert database.execute_sql("SHOW transaction_isolation").fetchone()[0] == (
            "read committed")  # outside a transaction: the session is untouched
        database.init(name, isolation_level="REPEATABLE READ")
        assert isolation(database) == "repeatable read"
        database.init(name)  # peewee resets the level on every init()
        assert isolation(database) == "read committed"


def test_atomic_takes_an_isolation_level_as_peewee_does(pg, pair):
    for database in pair():
        with database.atomic(isolation_level="SERIALIZABLE"):
            level = database.execute_sql("SHOW transaction_isolation").fetchone()[0]
        assert level == "serializable"


def test_init_refuses_an_unknown_isolation_level_naming_it(pg, db):
    name, params = peewee_params(pg.url)
    with pytest.raises(errors.ConfigError, match="unknown isolation level 'SNAPSHOT'"):
        monps_store.db.init(name, isolation_level="SNAPSHOT", **params)


def test_init_none_leaves_the_database_unconfigured(pg, db):
    monps_store.db.init(None)
    with pytest.raises(errors.NotInitialised):
        monps_store.db.connect()


# -- signals -----------------------------------------------------------------------------------


def test_signals_fire_for_their_sender_only_on_either_database(pair):
    for database in pair():
        class Note(SignalsModel):
            v = peewee.IntegerField(null=True)
            note = peewee.TextField(null=True)

            class Meta:
                table_name = "peewee_contract_rows"
                schema = "public"

        class Other(SignalsModel):
            class Meta:
                table_name = "peewee_contract_rows"
                schema = "public"

        seen = []

        @pre_save(sender=Note)
        def before(sender, instance, created, seen=seen):
            seen.append(("pre", instance.v, created))

        @post_save(sender=Note)
        def after(sender, instance, created, seen=seen):
            seen.append(("post", instance.v, created))

        try:
            with Note.bind_ctx(database), Other.bind_ctx(database):
                note = Note.create(v="7", note="kept as given")  # peewee coerces "7" to 7
                note.v = 8
                note.save()
                Other.create()
                assert Note.get_by_id(note.id).v == 8
        finally:
            pre_save.disconnect(before, sender=Note)
            post_save.disconnect(after, sender=Note)
        assert seen == [("pre", "7", True), ("post", "7", True),
                        ("pre", 8, False), ("post", 8, False)]
        database.execute_sql(f"DELETE FROM {SCRATCH}")
        database.close()


# -- binding the package's models elsewhere ----------------------------------------------------


def test_bind_ctx_writes_package_models_and_their_events_through_the_bound_database(pg, db):
    name, params = peewee_params(pg.url)
    other = PooledPostgresqlDatabase(name, **params)
    opened = monps_store.pool_status()["opened"]
    with events.listen("team_quantum_dna_changed", timeout=5) as listener:
        with other.bind_ctx([TeamQuantumDNA]):
            lyon = TeamQuantumDNA.create(team_name="Lyon", league="Ligue 1")
            crud.insert_many(TeamQuantumDNA, [{"team_name": "Nice", "league": "Ligue 1"}])
            crud.update_where(TeamQuantumDNA, {"roi": 2}, team_name="Nice")
        received = [listener.next_event(5) for _ in range(3)]
    other.close_all()
    nice = pg.sql("SELECT id FROM quantum.team_quantum_dna WHERE team_name = 'Nice'")[0][0]
    assert [event.payload["ids"] for event in received] == [[lyon.id], [nice], [nice]]
    assert monps_store.pool_status()["opened"] == opened  # nothing went through the package's
    assert TeamQuantumDNA._meta.database is monps_store.db  # bound back
