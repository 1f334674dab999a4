"""The ``monps-store`` command line.

    monps-store check [--json]            # connection, server, settings, pool, schema drift
    monps-store --embedded check          # the same against the embedded PostgreSQL
    monps-store migrate | rollback | status | history | create | stamp | reset
    monps-store ingest odds FILE | settle-clv | demo | partitions [--ahead N] [--retain M --yes]
    monps-store listen CHANNEL...         # events as JSON lines until interrupted
    monps-store env-example > .env        # every variable, to fill in

``main(argv) -> int`` is the one entry point and the only place that loads settings. Expected
failures become one line on stderr, ``error: ...``, and an exit code: 1 for a problem found,
2 for a usage or configuration error, 75 when another run holds the migration lock.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import click
import peewee
import psycopg2

from monps_store import __version__, config, database, errors

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 75


class Context:
    """What the global options decided, shared by every subcommand."""

    def __init__(self, embedded: bool):
        self.embedded = embedded
        self.settings: config.Settings | None = None

    def init_db(self) -> config.Settings:
        """Load the settings (environment / .env, or the embedded server) and configure the db."""
        if self.settings is None:
            if self.embedded:
                self.settings = config.from_url(_start_embedded())
            else:
                self.settings = config.load_settings()
            database.init_db(self.settings)
        return self.settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--embedded", is_flag=True,
              help="Use a local PostgreSQL started on demand (data in ./.monps/pgdata "
                   "or $MONPS_EMBEDDED_DIR) instead of the configured server.")
@click.option("-v", "--verbose", count=True,
              help="More log output (-v info, -vv debug, -vvv the embedded server's too). "
                   "Before the command: monps-store -v check.")
@click.version_option(__version__, "--version", prog_name="monps-store",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx, embedded, verbose):
    """monps_store: the Mon_PS persistence layer."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # pgserver narrates every step of starting a server at INFO: only asked for with -vvv.
    logging.getLogger("pgserver").setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    if not verbose:
        _held.install()
    ctx.obj = Context(embedded)


class _HeldWarnings(logging.Filter):
    """Below -v, the warnings of the connection pool wait for the command's outcome.

    Written for a long-running service's log (a lost connection, a dead one discarded, a
    saturated pool), in a command they come just before the ``error:`` line that says the same
    thing once. So they are dropped when the command fails (it said why in its own words), and
    shown at its end when it succeeds. -v shows them as they happen.
    """

    LOGGERS = ("monps_store.database",)

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        self.records.append(record)
        return False

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def release(self, show: bool) -> None:
        """Stop holding; log what was held if ``show``."""
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)
        records, self.records = self.records, []
        for record in records if show else ():
            logging.getLogger(record.name).handle(record)


_held = _HeldWarnings()


def _start_embedded(keep_running: bool = False) -> str:
    """Start (or reuse) the embedded server; creating a cluster (tens of MB on disk) is said."""
    from monps_store import embedded

    def creating(directory) -> None:
        click.echo(f"creating a new development cluster in {directory}", err=True)

    return embedded.start(keep_running=keep_running, on_create=creating)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def check(obj: Context, as_json: bool) -> int:
    """Connect, then report the server version, effective settings, pool figures and every
    difference between the models and the live schema (both schemas, both directions).

    Exit 0 when everything is in order, 1 when the connection failed or the schema drifted.
    """
    settings = obj.init_db()
    report: dict[str, Any] = {"ok": True, "connection": {"url": settings.display_url}}
    start = time.perf_counter()
    try:
        version = database.server_version()
        report["connection"]["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
        report["server_version"] = version
    except errors.MonpsStoreError as exc:
        report["ok"] = False
        report["connection"]["error"] = str(exc)
    report["settings"] = settings.describe()
    if "error" not in report["connection"]:
        from monps_store import drift

        with database.connection() as db:
            report["drift"] = drift.compare(db)
            report["warnings"] = _pooler_warnings(db, settings)
        if any("missing from the database" in d for d in report["drift"]):
            report["hint"] = (f"run `monps-store {'--embedded ' if obj.embedded else ''}"
                              "migrate` to create the missing tables")
        report["ok"] = not report["drift"]
    report["pool"] = database.pool_status()
    if settings.replicas:
        from monps_store import replicas

        report["replicas"] = replicas.check()
        # A replica that cannot serve is a problem to see; reads still go to the primary.
        if any(not r["reachable"] or not r["in_recovery"] for r in report["replicas"]):
            report["ok"] = False

    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_check(report)
    return EXIT_OK if report["ok"] else EXIT_PROBLEM


def _pooler_warnings(db, settings) -> list[str]:
    """A pooler in front shows when, connected over TCP, the server's side of the session is
    a unix socket or another port (a connection over a unix socket tells nothing)."""
    if settings.pooler != "none" or not settings.host or settings.host.startswith("/"):
        return []
    port = db.execute_sql("SELECT inet_server_port()").fetchone()[0]
    if port == settings.port:
        return []
    where = "a unix socket" if port is None else f"port {port}"
    return [f"connected to port {settings.port} over TCP but the server sees the session on "
            f"{where}: a pooler (PgBouncer?) or a port forward sits in front. Behind PgBouncer "
            "in transaction mode set DB_POOLER=pgbouncer, or session settings, startup options "
            "and prepared statements will leak or fail"]


def _print_check(report: dict) -> None:
    conn = report["connection"]
    if "error" in conn:
        click.echo(f"error: {conn['error']}", err=True)
        click.echo(f"connection  FAILED  {conn['url']}")
    else:
        click.echo(f"connection  ok ({conn['latency_ms']} ms)  {conn['url']}")
        click.echo(f"server      PostgreSQL {report['server_version']}")
    settings = report["settings"]
    shown = ("user", "password", "database", "pool_size", "max_overflow", "pool_timeout",
             "pool_recycle", "connect_timeout", "statement_timeout", "application_name", "echo")
    click.echo("settings    " + " ".join(f"{k}={settings[k]}" for k in shown))
    if "drift" in report:
        click.echo(f"drift       {len(report['drift'])} difference(s) between models and database"
                   if report["drift"] else "drift       none: the database matches the models")
        for difference in report["drift"]:
            click.echo(f"  - {difference}")
        if "hint" in report:
            click.echo(f"hint        {report['hint']}")
    pool = report["pool"]
    click.echo("pool        " + " ".join(
        f"{k}={pool[k]}" for k in ("max_connections", "in_use", "idle", "available", "opened",
                                   "dead_discarded", "exhausted")))
    for warning in report.get("warnings", ()):
        click.echo(f"warning     {warning}")
    for replica in report.get("replicas", ()):
        if not replica["reachable"]:
            click.echo(f"replica     FAILED  {replica['url']}: {replica['error']}")
        elif not replica["in_recovery"]:
            click.echo(f"replica     NOT A STANDBY (not in recovery)  {replica['url']}")
        else:
            click.echo(f"replica     ok, in recovery, lag {replica['lag_ms']} ms  "
                       f"{replica['url']}")


# -- data ----------------------------------------------------------------------------------


@cli.group()
def ingest():
    """Bulk-load data from files."""


@ingest.command("odds")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--skip-invalid", is_flag=True,
              help="Load the good rows; write each bad one to --rejects with its reason.")
@click.option("--rejects", type=click.Path(dir_okay=False, writable=True, path_type=str),
              help="CSV file receiving rejected rows (with --skip-invalid).")
@click.pass_obj
def ingest_odds(obj, file, skip_invalid, rejects):
    """Upsert odds from a CSV FILE: a header row, then the columns match_id, league,
    home_team, away_team, bookmaker, market, selection, price, commence_time, collected_at in
    any order (README, "Odds ingest and CLV settlement").

    Strict by default: the first bad row stops the load and nothing is written (exit 1).
    """
    if rejects and not skip_invalid:
        raise click.UsageError("--rejects goes with --skip-invalid")
    from monps_store import ingest as ingest_module
    from monps_store.uow import unit_of_work

    obj.init_db()
    told = _RejectsOnStderr() if skip_invalid and not rejects else None
    try:
        with unit_of_work(actor=f"cli:ingest odds:{file}"[:200],
                          reason="monps-store ingest odds"):
            report = ingest_module.ingest_odds(file, skip_invalid=skip_invalid,
                                               rejects=rejects or told,
                                               progress=_progress(f"ingest {file}"))
    except errors.InvalidInput as exc:  # the flag, not the Python parameter
        raise errors.InvalidInput(str(exc).replace(
            ingest_module.SKIP_INVALID_HINT, "use --skip-invalid to load the good rows")) from None
    if sys.stderr.isatty():
        click.echo(err=True)  # end the progress line
    if told is not None:
        told.finish()
    click.echo(f"odds: {report.summary()}")
    return EXIT_OK


class _RejectsOnStderr:
    """The rejects "file" of ``--skip-invalid`` without ``--rejects``: the first reasons on
    stderr, and how many more there were."""

    SHOWN = 20

    def __init__(self):
        self.buffer, self.seen = "", -1  # the first line written is the header

    def write(self, text: str) -> int:
        import csv

        self.buffer += text
        *complete, self.buffer = self.buffer.split("\n")
        for row in csv.reader(complete):
            self.seen += 1
            if 0 < self.seen <= self.SHOWN and len(row) > 1:
                click.echo(f"rejected {row[1]}", err=True)
        return len(text)

    def finish(self) -> None:
        if self.seen > self.SHOWN:
            click.echo(f"... and {self.seen - self.SHOWN:,} more rejected rows (--rejects FILE "
                       "keeps every one, with its fields)", err=True)


def _progress(label: str, every: float = 5.0):
    """A progress callback: a live counter on a terminal; elsewhere (cron, CI) a line every
    ``every`` seconds, so a long load is seen to move."""
    if sys.stderr.isatty():
        def show(rows: int) -> None:
            click.echo(f"\r{label}: {rows:,} rows", err=True, nl=False)

        return show
    next_at = [time.monotonic() + every]

    def tell(rows: int) -> None:
        if time.monotonic() >= next_at[0]:
            next_at[0] = time.monotonic() + every
            click.echo(f"{label}: {rows:,} rows so far", err=True)

    return tell


@cli.command("settle-clv")
@click.option("--reference-bookmaker", metavar="NAME",
              help="Take closing prices from this bookmaker instead of each pick's own.")
@click.pass_obj
def settle_clv(obj, reference_bookmaker):
    """Fill closing odds and CLV for open picks; picks with no closing price stay open."""
    from monps_store.repositories import clv
    from monps_store.uow import unit_of_work

    obj.init_db()
    if reference_bookmaker is not None:
        _check_reference_bookmaker(reference_bookmaker)
    with unit_of_work(actor="cli:settle-clv", reason="monps-store settle-clv"):
        result = clv.settle(reference_bookmaker)
    click.echo(f"settled {result.settled:,} pick(s); {result.still_open:,} still open "
               "(no price collected before kick-off)")
    return EXIT_OK


def _check_reference_bookmaker(name: str) -> None:
    """Refuse a reference bookmaker with no odds at all for the open picks' matches (a typo,
    most likely), naming the bookmakers that have some."""
    with database.connection() as db:
        open_picks, known = db.execute_sql(
            "SELECT (SELECT count(*) FROM public.tracking_clv_picks WHERE status = 'open'), "
            "EXISTS (SELECT 1 FROM public.tracking_clv_picks p JOIN public.odds o "
            "ON o.match_id = p.match_id AND o.bookmaker = %s WHERE p.status = 'open')",
            (name,)).fetchone()
        if not open_picks or known:
            return
        names = [b for (b,) in db.execute_sql(
            "SELECT DISTINCT o.bookmaker FROM public.tracking_clv_picks p JOIN public.odds o "
            "ON o.match_id = p.match_id WHERE p.status = 'open' ORDER BY 1 LIMIT 20")]
    raise errors.InvalidInput(
        f"--reference-bookmaker {name!r}: no odds from it for the matches of the "
        f"{open_picks:,} open pick(s); bookmakers with odds there: "
        f"{', '.join(names) if names else 'none'}; nothing was settled")


@cli.command("demo")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True, max=1), default=1.0,
              show_default=True, help="Fraction of the production-size odds and picks.")
@click.option("--seed", type=int, default=42, show_default=True, help="Sample data seed.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=120, show_default=True,
              help="Seconds to wait for another migration run to finish.")
@click.pass_obj
def demo_command(obj, scale, seed, lock_timeout):
    """Migrate, load a production-scale sample data set, settle CLV and print a report."""
    from monps_store import demo, sample
    from monps_store.migrate import Migrations

    settings = obj.init_db()
    with Migrations.open(settings, lock_timeout=lock_timeout) as migrations:
        applied = migrations.apply()
    click.echo(f"migrate: applied {', '.join(applied)}" if applied else "migrate: up to date")
    data = sample.SampleData(seed=seed, scale=scale)
    progress = _progress(f"odds (of {data.odds_count:,})")
    pending = [False]  # a live counter line is open on the terminal

    def counted(rows: int) -> None:
        pending[0] = sys.stderr.isatty()
        progress(rows)

    def say(*args, **kwargs) -> None:
        if pending[0]:  # end the counter's line before anything else is printed
            click.echo(err=True)
            pending[0] = False
        click.echo(*args, **kwargs)

    demo.load(data, say, progress=counted)
    demo.report(say)
    return EXIT_OK


@cli.command("partitions")
@click.option("--ahead", type=click.IntRange(0, 1200), metavar="N",
              help="Create this month's partition and the next N months'.")
@click.option("--retain", type=click.IntRange(1, None), metavar="MONTHS",
              help="Detach and drop the partitions before the last MONTHS whole months.")
@click.option("--yes", is_flag=True, help="Confirm --retain: the dropped months' rows are lost.")
@click.option("--json", "as_json", is_flag=True, help="Print the partitions as JSON.")
@click.pass_obj
def partitions_command(obj, ahead, retain, yes, as_json):
    """List the month partitions of public.odds with the planner's row estimates (counting
    would read every row) and size; create ahead; drop old ones. Creating works with the
    application role; dropping needs the table's owner (MIGRATION_DATABASE_URL when set)."""
    from monps_store import partitions
    from monps_store.migrate import connect

    if retain is not None and not yes:
        raise click.UsageError(f"--retain {retain} drops every month before the last {retain} "
                               "with its rows; pass --yes to confirm")
    settings = obj.init_db()
    if ahead is not None:
        with database.connection():
            for name in partitions.create_ahead(ahead):
                click.echo(f"created {name}")
    if retain is not None:
        owner = connect(settings)  # the owner role when MIGRATION_DATABASE_URL is set
        try:
            for name in partitions.drop_older(retain, owner):
                click.echo(f"dropped {name}")
        finally:
            owner.close()
    with database.connection():
        listed = partitions.listing()
    if as_json:
        click.echo(json.dumps([{"name": p.name, "start": p.start and p.start.isoformat(),
                                "end": p.end and p.end.isoformat(),
                                "estimated_rows": p.estimated_rows, "bytes": p.bytes}
                               for p in listed], indent=2))
    elif ahead is None and retain is None:
        click.echo(f"{'partition':<16} {'months':<24} {'rows (est.)':>12} {'size':>14}")
        for p in listed:
            span = (f"{p.start:%Y-%m-%d} .. {p.end:%Y-%m-%d}" if p.start else "(not monthly)")
            rows = "unknown" if p.estimated_rows is None else f"{p.estimated_rows:,}"
            click.echo(f"{p.name:<16} {span:<24} {rows:>12} {p.bytes / 2**20:>10.1f} MiB")
        known = [p.estimated_rows for p in listed if p.estimated_rows is not None]
        summary = f"{len(listed)} partition(s), about {sum(known):,} rows (planner estimates)"
        if len(known) < len(listed):
            summary += (f"; {len(listed) - len(known)} never analysed, rows unknown: "
                        "ANALYZE public.odds gives estimates")
        click.echo(summary)
    return EXIT_OK


@cli.group("embedded")
def embedded_group():
    """A long-lived development PostgreSQL (data in ./.monps/pgdata or $MONPS_EMBEDDED_DIR).
    Every --embedded command, the Python API (DATABASE_URL from `url`) and the test suite
    use it while it runs, and none of them stops it."""


@embedded_group.command("start")
def embedded_start():
    """Start the server (or find it running) and leave it running; prints its DATABASE_URL."""
    from monps_store import embedded

    already = embedded.url()
    uri = already or _start_embedded(keep_running=True)
    click.echo(f"{'already running' if already else 'started'} in {embedded.data_dir()}",
               err=True)
    click.echo(uri)
    return EXIT_OK


@embedded_group.command("stop")
def embedded_stop():
    """Stop the server (fast shutdown: open sessions are cut off). Exit 0 either way."""
    from monps_store import embedded

    stopped = embedded.stop()
    click.echo(f"{'stopped' if stopped else 'not running'}: {embedded.data_dir()}")
    return EXIT_OK


@embedded_group.command("status")
def embedded_status():
    """Whether the server runs: exit 0 and its pid, start time and URL, or exit 1."""
    from monps_store import embedded

    found = embedded.status()
    if found is None:
        click.echo(f"not running: {embedded.described()}")
        return EXIT_PROBLEM
    click.echo(f"running: {found['data_dir']} (pid {found['pid']}, since {found['started']})")
    click.echo(f"DATABASE_URL={found['url']}")
    return EXIT_OK


@embedded_group.command("url")
def embedded_url():
    """Print the running server's DATABASE_URL (exit 1 if it is not running), e.g.
    `export DATABASE_URL=$(monps-store embedded url)`."""
    from monps_store import embedded

    found = embedded.url()
    if found is None:
        click.echo(f"error: no embedded server runs in {embedded.described()}; start one "
                   "with `monps-store embedded start`", err=True)
        return EXIT_PROBLEM
    click.echo(found)
    return EXIT_OK


def _channel_names(ctx, param, values: tuple[str, ...]) -> tuple[str, ...]:
    from monps_store.events import check_channel

    try:
        return tuple(check_channel(value) for value in values)
    except errors.InvalidInput as exc:  # a usage error, told before connecting
        raise click.BadParameter(str(exc)) from None


@cli.command("listen")
@click.argument("channels", nargs=-1, required=True, callback=_channel_names)
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Stop after this long without an event (default: run until interrupted).")
@click.pass_obj
def listen_command(obj, channels, timeout):
    """Print the events of CHANNELS as JSON lines ({"channel", "payload", "pid"}) until
    interrupted (Ctrl-C or SIGTERM: exit 0). Uses DATABASE_LISTEN_URL when set."""
    import signal

    from monps_store import events

    obj.init_db()

    def reconnected():
        click.echo("listen: reconnected; events sent while disconnected were missed", err=True)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with events.listen(*channels, timeout=timeout, on_reconnect=reconnected) as listener:
            for event in listener:
                click.echo(json.dumps({"channel": event.channel, "payload": event.payload,
                                       "pid": event.pid}, ensure_ascii=False))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


@cli.command("env-example")
def env_example():
    """Print the example configuration: every variable the settings read, with its default
    and meaning. Save it and fill it in: monps-store env-example > .env"""
    from importlib import resources

    text = resources.files("monps_store").joinpath("env.example").read_text(encoding="utf-8")
    click.echo(text, nl=False)
    return EXIT_OK


# -- migrations ------------------------------------------------------------------------------


def migrate_dir_option(fn):
    return click.option("--migrate-dir", type=click.Path(file_okay=False, path_type=str),
                        help="Migration directory (default: the migrations shipped with the "
                             "package).")(fn)


def migration_options(fn):
    """--migrate-dir, and --lock-timeout for the commands that take the migration lock."""
    fn = migrate_dir_option(fn)
    fn = click.option("--lock-timeout", type=click.FloatRange(min=0), default=120,
                      show_default=True,
                      help="Seconds to wait for another migration run to finish.")(fn)
    return fn


def _migrations(obj: Context, migrate_dir, lock_timeout, *, lock=True):
    from monps_store.migrate import Migrations

    return Migrations.open(obj.init_db(), migrate_dir, lock=lock, lock_timeout=lock_timeout)


@cli.command()
@click.option("--to", "to", metavar="NAME", help="Stop after this migration.")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the SQL pending migrations would run; change nothing.")
@migration_options
@click.pass_obj
def migrate(obj, to, as_sql, migrate_dir, lock_timeout):
    """Apply pending migrations, each in its own transaction."""
    with _migrations(obj, migrate_dir, lock_timeout) as migrations:
        if as_sql:
            pending = migrations.sql(to)
            if not pending:
                click.echo("-- nothing to migrate: the database is up to date")
            for name, statements in pending:
                click.echo(f"-- {name}\nBEGIN;")
                for statement in statements:
                    click.echo(statement.strip().rstrip(";") + ";")
                click.echo("COMMIT;")
            return EXIT_OK
        applied = migrations.apply(to, on_applied=lambda name: click.echo(f"applied {name}"))
    if not applied:
        click.echo("nothing to migrate: the database is up to date")
    return EXIT_OK


@cli.command()
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many applied migrations to undo.")
@migration_options
@click.pass_obj
def rollback(obj, count, migrate_dir, lock_timeout):
    """Undo the last COUNT applied migrations, newest first."""
    with _migrations(obj, migrate_dir, lock_timeout) as migrations:
        for name in migrations.rollback(count):
            click.echo(f"rolled back {name}")
    return EXIT_OK


@cli.command()
@migrate_dir_option
@click.pass_obj
def status(obj, migrate_dir):
    """List applied and pending migrations; exit 1 when any is pending, or when an applied
    one has no file in the migration directory."""
    with _migrations(obj, migrate_dir, 0, lock=False) as migrations:
        applied, pending = migrations.applied(), migrations.pending()
        missing, directory = set(migrations.missing()), migrations.migrate_dir
    for name, at in applied:
        gone = "  (its file is missing)" if name in missing else ""
        click.echo(f"applied  {name}  {at:%Y-%m-%d %H:%M:%S%z}{gone}")
    for name in pending:
        click.echo(f"pending  {name}")
    click.echo(f"{len(applied)} applied, {len(pending)} pending")
    if missing:
        click.echo(f"warning: {len(missing)} applied migration(s) have no file in {directory}: "
                   "restore them, or this database's schema is not what the files describe",
                   err=True)
    if pending and not applied:
        click.echo("run `monps-store migrate` to create the schema", err=True)
    return EXIT_PROBLEM if pending or missing else EXIT_OK


@cli.command()
@migrate_dir_option
@click.pass_obj
def history(obj, migrate_dir):
    """Applied migrations with the time each was applied."""
    with _migrations(obj, migrate_dir, 0, lock=False) as migrations:
        applied = migrations.applied()
    for name, at in applied:
        click.echo(f"{at:%Y-%m-%d %H:%M:%S%z}  {name}")
    if not applied:
        click.echo("no migration applied")
    return EXIT_OK


@cli.command()
@click.argument("name")
@click.option("--auto", is_flag=True, help="Generate the operations from model changes.")
@migrate_dir_option
@click.pass_obj
def create(obj, name, auto, migrate_dir):
    """Write a new migration file NAME (use a development checkout or --migrate-dir)."""
    with _migrations(obj, migrate_dir, 0, lock=False) as migrations:
        path = migrations.create(name, auto=auto)
    click.echo(f"created {path}" if path else "no changes found: no migration written")
    return EXIT_OK


@cli.command()
@click.option("--force", is_flag=True, help="Record the migrations even if the schema differs.")
@migration_options
@click.pass_obj
def stamp(obj, force, migrate_dir, lock_timeout):
    """Record every migration as applied on a database that already has the schema.

    The live schema is compared with the models first; any difference is listed and nothing
    is recorded (exit 1) unless --force.
    """
    with _migrations(obj, migrate_dir, lock_timeout) as migrations:
        stamped = migrations.stamp(force=force)
    for name in stamped:
        click.echo(f"stamped {name}")
    if not stamped:
        click.echo("nothing to stamp: every migration is recorded")
    return EXIT_OK


@cli.command()
@click.option("--yes", is_flag=True, help="Confirm: every table's data is lost.")
@migration_options
@click.pass_obj
def reset(obj, yes, migrate_dir, lock_timeout):
    """Roll every migration back and apply them all again (destroys all data)."""
    if not yes:
        raise click.UsageError("reset drops every table and its data; pass --yes to confirm")
    with _migrations(obj, migrate_dir, lock_timeout) as migrations:
        undone, applied = migrations.reset()
    click.echo(f"rolled back {len(undone)}, applied {len(applied)} migration(s)")
    return EXIT_OK


def database_error(exc: BaseException) -> str:
    """One line for a database error, with what to do about the common ones."""
    orig = getattr(exc, "orig", None) or exc
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if getattr(orig, "pgcode", None) == "42501":
        return (f"the database refused: {text}. The role in DATABASE_URL lacks this privilege; "
                "schema changes run with MIGRATION_DATABASE_URL (an owner role), see "
                "'Running with least privilege' in README.md")
    if getattr(orig, "pgcode", None) == "42P01":  # undefined table
        return (f"database error: {text}: is the schema migrated? `monps-store status` shows "
                "the pending migrations, `monps-store migrate` applies them")
    return f"database error: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    code = EXIT_PROBLEM
    try:
        code = _main(argv)
    finally:
        _held.release(show=code == EXIT_OK)
    return code


def _main(argv: list[str] | None) -> int:
    try:
        result = cli.main(args=argv, prog_name="monps-store", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_PROBLEM
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare `monps-store`
        click.echo(exc.ctx.get_help(), err=True)
        return EXIT_USAGE
    except click.ClickException as exc:  # usage errors: bad option, missing argument
        click.echo(f"error: {exc.format_message()}", err=True)
        for line in _usage_hints(exc):
            click.echo(line, err=True)
        return EXIT_USAGE
    except errors.ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except errors.MigrationLocked as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_LOCKED
    except errors.MonpsStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_PROBLEM
    except (peewee.DatabaseError, peewee.InterfaceError, psycopg2.Error) as exc:
        # An error the package does not translate (a missing privilege, a constraint, ...):
        # still one line; the traceback is for -vv.
        logger.debug("database error", exc_info=True)
        click.echo(f"error: {database_error(exc)}", err=True)
        return EXIT_PROBLEM
    finally:
        database.close_db()
    return result if isinstance(result, int) else EXIT_OK


_GLOBAL_OPTIONS = ("-v", "-vv", "-vvv", "--verbose", "--embedded")


def _usage_hints(exc: click.ClickException) -> list[str]:
    """What to try after a usage error: a global option given after the command, and where
    the command's help is."""
    hints = []
    option = getattr(exc, "option_name", None)
    if isinstance(exc, click.NoSuchOption) and option in _GLOBAL_OPTIONS:
        hints.append(f"{option} is a global option: put it before the command, e.g. "
                     f"monps-store {option} check")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        hints.append(f"Try '{ctx.command_path} {ctx.help_option_names[0]}' for help.")
    return hints


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
