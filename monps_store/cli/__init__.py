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
The commands live one group to a module (``migrations``, ``data``, ``dev``, ``events``); each
parses, calls the library and prints.
"""

from __future__ import annotations

import logging
import sys

import click
import peewee
import psycopg2

from monps_store import __version__, database, errors
from monps_store.cli import data, dev, events, migrations
from monps_store.cli.context import EXIT_LOCKED, EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, Context

__all__ = ["cli", "main", "run"]

logger = logging.getLogger(__name__)


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


for _command in migrations.COMMANDS + data.COMMANDS + dev.COMMANDS + events.COMMANDS:
    cli.add_command(_command)


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
