"""The schema commands: ``check`` and the migration commands on ``migrate.Migrations``.

    monps-store check [--json]
    monps-store migrate [--to NAME] [--sql] | rollback [--count N] | status | history
    monps-store create NAME [--auto] | stamp [--force] | reset --yes
"""

from __future__ import annotations

import json

import click

from monps_store.cli.context import EXIT_OK, EXIT_PROBLEM, Context, lock_timeout_option


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def check(obj: Context, as_json: bool) -> int:
    """Connect, then report the server version, effective settings, pool figures and every
    difference between the models and the live schema (both schemas, both directions).

    Exit 0 when everything is in order, 1 when the connection failed or the schema drifted.
    """
    from monps_store import health

    settings = obj.init_db()
    report = health.check(
        settings, f"monps-store {'--embedded ' if obj.embedded else ''}migrate")
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_check(report)
    return EXIT_OK if report["ok"] else EXIT_PROBLEM


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


def migrate_dir_option(fn):
    return click.option("--migrate-dir", type=click.Path(file_okay=False, path_type=str),
                        help="Migration directory (default: the migrations shipped with the "
                             "package).")(fn)


def migration_options(fn):
    """--migrate-dir, and --lock-timeout for the commands that take the migration lock."""
    return lock_timeout_option(migrate_dir_option(fn))


def _migrations(obj: Context, migrate_dir, lock_timeout, *, lock=True):
    from monps_store.migrate import Migrations

    return Migrations.open(obj.init_db(), migrate_dir, lock=lock, lock_timeout=lock_timeout)


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
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


COMMANDS = (check, migrate, rollback, status, history, create, stamp, reset)
