"""What every command shares: the exit codes, the ``Context`` the global options decide, and
the embedded server's start.

    @click.command()
    @click.pass_obj
    def command(obj: Context) -> int:
        settings = obj.init_db()   # the only place the command line loads settings
        return EXIT_OK
"""

from __future__ import annotations

import click

from monps_store import config, database

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
                self.settings = config.from_url(start_embedded())
            else:
                self.settings = config.load_settings()
            database.init_db(self.settings)
        return self.settings


def start_embedded(keep_running: bool = False) -> str:
    """Start (or reuse) the embedded server; creating a cluster (tens of MB on disk) is said."""
    from monps_store import embedded

    def creating(directory) -> None:
        click.echo(f"creating a new development cluster in {directory}", err=True)

    return embedded.start(keep_running=keep_running, on_create=creating)


def lock_timeout_option(fn):
    """--lock-timeout, for the commands that take the migration lock."""
    return click.option("--lock-timeout", type=click.FloatRange(min=0), default=120,
                        show_default=True,
                        help="Seconds to wait for another migration run to finish.")(fn)
