"""Cron jobs run as real processes: overlapping runs, killed backends, errors that must not be
retried. Plus the retry rules checked against errors raised by PostgreSQL itself."""

import os
import subprocess
import sys
import textwrap

import peewee
import pytest

import monps_store
from monps_store import cron, errors
from monps_store.web import connection_dependency

JOB = textwrap.dedent("""
    import os, pathlib
    from monps_store import cron, db
    from monps_store.models import TeamQuantumDNA
    from monps_store.repositories import crud

    MODE = os.environ["MODE"]
    MARKER = pathlib.Path(os.environ["MARKER"])

    @cron.job("test-job", backoff=0.05, statement_timeout=int(os.environ.get("TIMEOUT", "0")))
    def main():
        crud.insert_many(TeamQuantumDNA, [{"team_name": f"T{i:03d}", "league": "L"}
                                          for i in range(100)])
        first_attempt = not MARKER.exists()
        MARKER.touch()
        if MODE == "overlap":
            db.execute_sql("SELECT pg_sleep(3)")  # holds the lock while the other run starts
        elif MODE == "killed" and first_attempt:
            db.execute_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        elif MODE == "serialization" and first_attempt:
            db.execute_sql("DO $$ BEGIN RAISE EXCEPTION 'could not serialize' "
                           "USING ERRCODE = 'serialization_failure'; END $$")
        elif MODE == "bug":
            raise ValueError("row 7 has no league")
        elif MODE == "slow":
            db.execute_sql("SELECT pg_sleep(1)")

    main()
""")


@pytest.fixture
def job_script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text(JOB)
    return path


def start(pg, script, mode, marker, **env):
    environment = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": pg.url, "MODE": mode,
                   "MARKER": str(marker)} | env
    return subprocess.Popen([sys.executable, str(script)], env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process):
    out, err = process.communicate(timeout=120)
    return process.returncode, err.splitlines()


def team_count(pg):
    return pg.sql("SELECT count(*), count(DISTINCT team_name) FROM quantum.team_quantum_dna")[0]


def test_an_overlapping_run_exits_75_and_the_work_is_done_once(pg, db, job_script, tmp_path):
    first = start(pg, job_script, "overlap", tmp_path / "m1")
    second = start(pg, job_script, "overlap", tmp_path / "m2")
    results = sorted([finish(first), finish(second)])
    (ok_code, ok_log), (locked_code, locked_log) = results
    assert (ok_code, locked_code) == (0, 75), results
    assert "job test-job ok in" in ok_log[-1] and ok_log[-1].endswith(", 0 retries")
    assert len(locked_log) == 1
    assert "job test-job skipped: another run holds the lock, nothing done in" in locked_log[0]
    assert team_count(pg) == (100, 100)


def test_a_job_whose_backend_is_killed_retries_and_leaves_no_duplicate(pg, db, job_script,
                                                                       tmp_path):
    code, log = finish(start(pg, job_script, "killed", tmp_path / "marker"))
    assert code == 0, log
    assert any("attempt 1 failed (ConnectionLost: lost the database connection" in line
               for line in log)
    assert "job test-job ok in" in log[-1] and log[-1].endswith(", 1 retry")
    assert team_count(pg) == (100, 100)  # the killed attempt's rows were rolled back


def test_a_serialization_failure_is_retried(pg, db, job_script, tmp_path):
    code, log = finish(start(pg, job_script, "serialization", tmp_path / "marker"))
    assert code == 0, log
    assert log[-1].endswith(", 1 retry")
    assert team_count(pg) == (100, 100)


def test_a_non_retryable_error_fails_at_once_with_one_line(pg, db, job_script, tmp_path):
    code, log = finish(start(pg, job_script, "bug", tmp_path / "marker"))
    assert code == 1
    assert len(log) == 1
    assert "ERROR monps_store.cron: job test-job failed: ValueError: row 7 has no league in" \
        in log[0]
    assert log[0].endswith(", 0 retries")
    assert team_count(pg) == (0, 0)


def test_the_statement_timeout_applies_and_a_timeout_is_not_retried(pg, db, job_script,
                                                                    tmp_path):
    code, log = finish(start(pg, job_script, "slow", tmp_path / "marker", TIMEOUT="200"))
    assert code == 1
    assert "StatementTimeout: statement cancelled after DB_STATEMENT_TIMEOUT=200 ms" in log[-1]
    assert log[-1].endswith(", 0 retries")
    assert team_count(pg) == (0, 0)


def test_a_configuration_error_exits_2_naming_the_variables(job_script, tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "MODE": "bug", "MARKER": str(tmp_path / "m")}
    result = subprocess.run([sys.executable, str(job_script)], env=env, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid configuration: DB_NAME: required" in result.stderr
    assert "DB_PASSWORD: required" in result.stderr


# -- the retry rules, on real errors ---------------------------------------------------------


def raised_by(db, sql):
    try:
        db.execute_sql(sql)
    except Exception as exc:
        return exc
    raise AssertionError(f"{sql} did not fail")


def test_retryable_errors_are_exactly_serialization_deadlock_and_lost_connections(db):
    with monps_store.connection():
        def raise_code(code):
            return raised_by(db, f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{code}'; "
                                 "END $$")
        assert cron.is_retryable(raise_code("40001"))
        assert cron.is_retryable(raise_code("40P01"))
        assert cron.is_retryable(raise_code("57P01"))
        assert not cron.is_retryable(raise_code("23505"))  # unique violation
        assert not cron.is_retryable(raise_code("57014"))  # statement timeout
        assert not cron.is_retryable(raised_by(db, "SELECT * FROM no_such_table"))
    assert cron.is_retryable(errors.ConnectionLost("gone"))
    assert not cron.is_retryable(ValueError("bad input"))
    assert not cron.is_retryable(peewee.IntegrityError("duplicate"))


def test_lock_keys_are_stable_and_distinct_per_job():
    assert cron.lock_key("odds-ingest") == cron.lock_key("odds-ingest")
    assert cron.lock_key("odds-ingest") != cron.lock_key("settle-clv")
    assert -(2 ** 63) <= cron.lock_key("odds-ingest") < 2 ** 63


def test_run_returns_the_exit_code_and_closes_the_pool(pg, db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg.url)
    ran = []
    code = cron.Job(lambda: ran.append(db.execute_sql("SELECT 1").fetchone()), "inline").run()
    assert (code, ran) == (0, [(1,)])
    status = monps_store.pool_status()
    assert (status["in_use"], status["idle"]) == (0, 0)


# -- web frameworks --------------------------------------------------------------------------


def test_the_web_dependency_returns_its_connection_however_the_request_ends(db):
    scope = connection_dependency()
    assert next(scope).execute_sql("SELECT 1").fetchone() == (1,)
    scope.close()
    failing = connection_dependency()
    next(failing)
    with pytest.raises(KeyError):
        failing.throw(KeyError("handler failed"))
    assert monps_store.pool_status()["in_use"] == 0


SERIALIZABLE_JOB = textwrap.dedent("""
    import os, pathlib, time
    from monps_store import cron, db
    from monps_store.models import TeamQuantumDNA
    from monps_store.repositories import crud

    NAME, OTHER = os.environ["NAME"], os.environ["OTHER"]
    FLAGS = pathlib.Path(os.environ["FLAGS"])

    @cron.job(f"serializable-{NAME}", backoff=0.05, isolation_level="serializable")
    def main():
        teams = db.execute_sql("SELECT count(*) FROM quantum.team_quantum_dna").fetchone()[0]
        (FLAGS / NAME).touch()
        deadline = time.monotonic() + 20
        while not (FLAGS / OTHER).exists() and time.monotonic() < deadline:
            time.sleep(0.02)  # both have read before either writes: write skew
        crud.create(TeamQuantumDNA, team_name=f"{NAME} after {teams}", league="L")

    main()
""")


def test_two_conflicting_serializable_jobs_both_end_committed(pg, db, tmp_path):
    script = tmp_path / "serializable_job.py"
    script.write_text(SERIALIZABLE_JOB)
    runs = [start(pg, script, "-", tmp_path / "unused", NAME=name, OTHER=other,
                  FLAGS=str(tmp_path)) for name, other in (("a", "b"), ("b", "a"))]
    (code_a, log_a), (code_b, log_b) = [finish(run) for run in runs]
    assert (code_a, code_b) == (0, 0), (log_a, log_b)
    retried = [line for line in log_a + log_b if "could not serialize access" in line]
    assert len(retried) == 1, (log_a, log_b)
    # The retried job read the other's row: what a serial order of the two would have given.
    assert sorted(name for (name,) in pg.sql(
        "SELECT team_name FROM quantum.team_quantum_dna")) in (
            ["a after 0", "b after 1"], ["a after 1", "b after 0"])


def test_a_job_with_an_unknown_isolation_level_is_refused_when_declared():
    with pytest.raises(ValueError, match="cron.job\\(isolation_level=...\\): unknown isolation "
                                         "level 'fast'"):
        cron.job("x", isolation_level="fast")(lambda: None)
