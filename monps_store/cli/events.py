"""The ``listen`` command: events as JSON lines until interrupted.

    monps-store listen clv_settled odds_changed --timeout 60
"""

from __future__ import annotations

import json

import click

from monps_store import errors
from monps_store.cli.context import EXIT_OK


def _channel_names(ctx, param, values: tuple[str, ...]) -> tuple[str, ...]:
    from monps_store.events import check_channel

    try:
        return tuple(check_channel(value) for value in values)
    except errors.InvalidInput as exc:  # a usage error, told before connecting
        raise click.BadParameter(str(exc)) from None


@click.command("listen")
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


COMMANDS = (listen_command,)
