"""The ``monps-store`` command line.

    monps-store check [--json]            # connection, server, settings, pool
    monps-store --embedded check          # the same against the embedded PostgreSQL

``main(argv) -> int`` is the one entry point and the only place that loads settings. Expected
failures become one line on stderr, ``error: ...``, and an exit code: 1 for a problem found,
2 for a usage or configuration error.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import click

from monps_store import config, database, errors

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


class Context:
    """What the global options decided, shared by every subcommand."""

    def __init__(self, embedded: bool):
        self.embedded = embedded
        self.settings: config.Settings | None = None

    def init_db(self) -> config.Settings:
        """Load the settings (environment / .env, or the embedded server) and configure the db."""
        if self.settings is None:
            if self.embedded:
                from monps_store import embedded

                self.settings = config.from_url(embedded.start())
            else:
                self.settings = config.load_settings()
            database.init_db(self.settings)
        return self.settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--embedded", is_flag=True,
              help="Use a local PostgreSQL started on demand (data in ./.monps/pgdata "
                   "or $MONPS_EMBEDDED_DIR) instead of the configured server.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx, embedded, verbose):
    """monps_store: the Mon_PS persistence layer."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(embedded)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def check(obj: Context, as_json: bool) -> int:
    """Connect, then report the server version, effective settings and pool figures.

    Exit 0 when everything is in order, 1 when a problem was found.
    """
    settings = obj.init_db()
    report = {"ok": True, "connection": {"url": settings.display_url}}
    start = time.perf_counter()
    try:
        version = database.server_version()
        report["connection"]["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
        report["server_version"] = version
    except errors.MonpsStoreError as exc:
        report["ok"] = False
        report["connection"]["error"] = str(exc)
    report["settings"] = settings.describe()
    report["pool"] = database.pool_status()

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
    pool = report["pool"]
    click.echo("pool        " + " ".join(
        f"{k}={pool[k]}" for k in ("max_connections", "in_use", "idle", "available", "opened",
                                   "dead_discarded", "exhausted")))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        result = cli.main(args=argv, prog_name="monps-store", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_PROBLEM
    except click.ClickException as exc:  # usage errors: bad option, missing argument
        click.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except errors.ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    except errors.MonpsStoreError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_PROBLEM
    finally:
        database.close_db()
    return result if isinstance(result, int) else EXIT_OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
