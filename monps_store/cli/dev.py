"""The development commands: the long-lived embedded server and the example configuration.

    monps-store embedded start | stop | status | url
    export DATABASE_URL=$(monps-store embedded url)
    monps-store env-example > .env
"""

from __future__ import annotations

import click

from monps_store.cli.context import EXIT_OK, EXIT_PROBLEM, start_embedded


@click.group("embedded")
def embedded_group():
    """A long-lived development PostgreSQL (data in ./.monps/pgdata or $MONPS_EMBEDDED_DIR).
    Every --embedded command, the Python API (DATABASE_URL from `url`) and the test suite
    use it while it runs, and none of them stops it."""


@embedded_group.command("start")
def embedded_start():
    """Start the server (or find it running) and leave it running; prints its DATABASE_URL."""
    from monps_store import embedded

    already = embedded.url()
    uri = already or start_embedded(keep_running=True)
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


@click.command("env-example")
def env_example():
    """Print the example configuration: every variable the settings read, with its default
    and meaning. Save it and fill it in: monps-store env-example > .env"""
    from importlib import resources

    text = resources.files("monps_store").joinpath("env.example").read_text(encoding="utf-8")
    click.echo(text, nl=False)
    return EXIT_OK


COMMANDS = (embedded_group, env_example)
