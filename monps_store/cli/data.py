"""The data commands: bulk loads, CLV settlement, the demo and the odds partitions.

    monps-store ingest odds FILE [--skip-invalid [--rejects OUT]]
    monps-store settle-clv [--reference-bookmaker NAME]
    monps-store demo [--scale 0.1] [--seed 42]
    monps-store partitions [--ahead N] [--retain MONTHS --yes] [--json]
"""

from __future__ import annotations

import json
import sys
import time

import click

from monps_store import database, errors
from monps_store.cli.context import EXIT_OK, lock_timeout_option


@click.group()
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
                                               progress=progress(f"ingest {file}"))
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


def progress(label: str, every: float = 5.0):
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


@click.command("settle-clv")
@click.option("--reference-bookmaker", metavar="NAME",
              help="Take closing prices from this bookmaker instead of each pick's own.")
@click.pass_obj
def settle_clv(obj, reference_bookmaker):
    """Fill closing odds and CLV for open picks; picks with no closing price stay open."""
    from monps_store.repositories import clv
    from monps_store.uow import unit_of_work

    obj.init_db()
    if reference_bookmaker is not None:
        with database.connection():
            unknown = clv.unknown_reference(reference_bookmaker)
        if unknown is not None:
            raise errors.InvalidInput(
                f"--reference-bookmaker {unknown.bookmaker!r}: no odds from it for the matches "
                f"of the {unknown.open_picks:,} open pick(s); bookmakers with odds there: "
                f"{', '.join(unknown.bookmakers) or 'none'}; nothing was settled")
    with unit_of_work(actor="cli:settle-clv", reason="monps-store settle-clv"):
        result = clv.settle(reference_bookmaker)
    click.echo(f"settled {result.settled:,} pick(s); {result.still_open:,} still open "
               "(no price collected before kick-off)")
    return EXIT_OK


@click.command("demo")
@click.option("--scale", type=click.FloatRange(min=0, min_open=True, max=1), default=1.0,
              show_default=True, help="Fraction of the production-size odds and picks.")
@click.option("--seed", type=int, default=42, show_default=True, help="Sample data seed.")
@lock_timeout_option
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
    counter = progress(f"odds (of {data.odds_count:,})")
    pending = [False]  # a live counter line is open on the terminal

    def counted(rows: int) -> None:
        pending[0] = sys.stderr.isatty()
        counter(rows)

    def say(*args, **kwargs) -> None:
        if pending[0]:  # end the counter's line before anything else is printed
            click.echo(err=True)
            pending[0] = False
        click.echo(*args, **kwargs)

    demo.load(data, say, progress=counted)
    demo.report(say)
    return EXIT_OK


@click.command("partitions")
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


COMMANDS = (ingest, settle_clv, demo_command, partitions_command)
