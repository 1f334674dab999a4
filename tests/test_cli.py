import json
import logging
import os
import subprocess
import sys
import time

import pytest

import monps_store
from monps_store import config, errors
from tests.conftest import TEST_APP_NAME

CANARY = "canary-Pw-5e21c"


def with_password(url, password=CANARY):
    """The test server's URL carrying ``password`` (the embedded server trusts local sockets)."""
    scheme, rest = url.split("://", 1)
    userinfo, _, location = rest.partition("@")
    return f"{scheme}://{userinfo.split(':')[0]}:{password}@{location}"


def cli(*args, env=None, cwd=None):
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "monps_store", *args], capture_output=True,
                          text=True, env=base | (env or {}), cwd=cwd, timeout=120)


def test_check_reports_server_settings_and_pool_and_exits_zero(pg, tables, tmp_path):
    result = cli("check", env={"DATABASE_URL": pg.url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("connection  ok")
    assert "server      PostgreSQL " in result.stdout
    assert "max_connections=15" in result.stdout


def test_check_json_is_one_document(pg, tables, tmp_path):
    result = cli("check", "--json", env={"DATABASE_URL": pg.url, "DB_POOL_SIZE": "2"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["settings"]["max_connections"] == 12
    assert report["pool"]["in_use"] == 0 and report["pool"]["opened"] == 1
    assert report["server_version"].split(".")[0].isdigit()


def test_check_exits_one_with_a_single_error_line_when_the_server_is_unreachable(tmp_path):
    env = {"DATABASE_URL": "postgresql://app:pw@127.0.0.1:1/monps", "DB_CONNECT_TIMEOUT": "2"}
    result = cli("check", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: cannot connect to postgresql://app:***@127.0.0.1:1/monps: connection to server at "
        '"127.0.0.1", port 1 failed: Connection refused']
    assert "Traceback" not in result.stderr


def test_a_configuration_error_exits_two_and_names_every_variable(tmp_path):
    result = cli("check", env={"DB_PORT": "x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid configuration (see .env.example")
    # Installed with pip, there is no .env.example beside it: the CLI prints it.
    assert "`monps-store env-example`" in result.stderr.splitlines()[0]
    for var in ("DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"):
        assert f"  - {var}:" in result.stderr


def test_the_cli_reads_a_dotenv_in_the_working_directory(pg, tables, tmp_path):
    (tmp_path / ".env").write_text(f"DATABASE_URL={pg.url}\nDB_APPLICATION_NAME=from-dotenv\n")
    result = cli("check", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["settings"]["application_name"] == "from-dotenv"


def test_a_usage_error_exits_two(tmp_path):
    result = cli("no-such-command", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: No such command")


def test_embedded_migrate_then_check_on_a_local_server(tmp_path):
    env = {"MONPS_EMBEDDED_DIR": str(tmp_path / "pgdata")}
    fresh = cli("--embedded", "check", env=env, cwd=tmp_path)
    assert fresh.returncode == 1  # an empty database differs from the models
    assert "quantum.team_quantum_dna: table is in the models but missing" in fresh.stdout
    # A new cluster (tens of MB) is never made silently; one that exists is just used.
    assert fresh.stderr.splitlines() == [
        f"creating a new development cluster in {tmp_path / 'pgdata'}"], fresh.stderr
    migrated = cli("--embedded", "migrate", env=env, cwd=tmp_path)
    assert "creating" not in migrated.stderr
    assert migrated.stdout == ("applied 001_initial\napplied 002_column_defaults\n"
                               "applied 003_partition_odds\n"), migrated.stderr
    result = cli("--embedded", "check", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"host={tmp_path / 'pgdata'}" in result.stdout
    assert "drift       none" in result.stdout


def test_embedded_without_pgserver_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['pgserver'] = None; "
            "from monps_store.cli import main; sys.exit(main(['--embedded', 'check']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: the embedded PostgreSQL needs the 'embedded' extra: pip install "
        "'monps-store[embedded]' (Python 3.11 or 3.12), or set DATABASE_URL to use your own server")


def test_a_bad_channel_is_a_usage_error_before_any_connection(tmp_path):
    result = cli("listen", "odds_changed", "Bad-Channel", cwd=tmp_path,
                 env={"DATABASE_URL": "postgresql://app@127.0.0.1:1/monps"})  # no server there
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: Invalid value for 'CHANNELS...': ")
    assert "'Bad-Channel'" in lines[0]
    assert lines[1:] == ["Try 'monps-store listen -h' for help."]


def test_a_lost_connection_reaches_the_user_as_one_error_line(pg, tables, tmp_path):
    from monps_store.database import advisory_lock_key
    from monps_store.ingest import COLUMNS

    csv = tmp_path / "odds.csv"
    csv.write_text(",".join(COLUMNS) + "\nm1,L,A,B,b,1x2,home,2.0,2026-12-01T20:00:00Z,"
                   "2026-12-01T19:00:00Z\n")
    env = {"DATABASE_URL": pg.url, "DB_APPLICATION_NAME": "cli_lost"}

    def ingest_cut_off(*options):
        """Run `ingest odds` while another ingest holds the lock; cut its session meanwhile."""
        holder = pg.admin()
        holder.autocommit = False
        try:
            holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)",
                                    (advisory_lock_key("monps_store.ingest:public.odds"),))
            run = subprocess.Popen(
                [sys.executable, "-m", "monps_store", *options, "ingest", "odds", str(csv)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
                | env)
            deadline = time.monotonic() + 60
            while not (waiting := pg.sql("SELECT pid FROM pg_stat_activity WHERE "
                                         "application_name = 'cli_lost' AND wait_event_type "
                                         "= 'Lock'")):
                assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
                time.sleep(0.05)
            pg.terminate(waiting[0][0])
            out, err = run.communicate(timeout=60)
        finally:
            holder.rollback()
            holder.close()
        assert run.returncode == 1 and out == ""
        return err.splitlines()

    assert ingest_cut_off() == [
        "error: lost the database connection (server closed the connection unexpectedly); the "
        "server rolled back the open transaction, if any. The dead connection is discarded: "
        "retry the unit of work."]
    # The library's warnings are still there, for a service's log and for -v.
    verbose = ingest_cut_off("-v")
    assert "WARNING monps_store.database: database connection lost: server closed the " \
        "connection unexpectedly" in verbose
    assert verbose[-1].startswith("error: lost the database connection")
    assert pg.sql("SELECT count(*) FROM public.odds") == [(0,)]


# -- the password never shows ----------------------------------------------------------------


@pytest.mark.parametrize("args,env,code", [
    (["check"], {}, 0),
    (["check", "--json"], {}, 0),
    (["-vv", "check"], {"DB_ECHO": "true"}, 0),
    (["check"], {"DB_POOL_SIZE": "zero"}, 2),
])
def test_a_canary_password_never_reaches_cli_output_or_logs(pg, tables, tmp_path, args, env, code):
    result = cli(*args, env={"DATABASE_URL": with_password(pg.url)} | env, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert result.stdout or result.stderr
    assert CANARY not in result.stdout + result.stderr


def test_a_canary_password_never_reaches_cli_output_on_connection_failure(tmp_path):
    env = {"DB_USER": "app", "DB_PASSWORD": CANARY, "DB_NAME": "x", "DB_HOST": "127.0.0.1",
           "DB_PORT": "1", "DB_ECHO": "true"}
    result = cli("-vv", "check", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert '"password": "***"' in result.stdout
    assert CANARY not in result.stdout + result.stderr


def test_a_canary_password_never_reaches_logs_reprs_or_exception_text(pg, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    settings = monps_store.init_db(url=with_password(pg.url), application_name=TEST_APP_NAME,
                                   echo=True)
    texts += [repr(settings), str(settings), repr(monps_store.db), str(monps_store.pool_status())]
    with monps_store.connection() as db:
        db.execute_sql("SELECT 1")
        try:
            db.execute_sql("SELECT * FROM no_such_table")
        except Exception as exc:
            texts.append(repr(exc))
    # A lost connection and a refused one, with the password in play.
    with pytest.raises(errors.ConnectionLost) as lost:
        with monps_store.connection() as db:
            pg.terminate(db.execute_sql("SELECT pg_backend_pid()").fetchone()[0])
            db.execute_sql("SELECT 1")
    monps_store.init_db(config.from_url(with_password("postgresql://app:x@127.0.0.1:1/x"),
                                        connect_timeout=2))
    with pytest.raises(errors.ConnectFailed) as refused:
        with monps_store.connection():
            pass
    for exc in (lost.value, refused.value):
        texts += [str(exc), repr(exc), str(exc.__cause__)]
    texts += [record.getMessage() for record in caplog.records]
    assert any("SELECT 1" in text for text in texts)  # the logs were really captured
    assert not [text for text in texts if CANARY in text]
    monps_store.close_db()
