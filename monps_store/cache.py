"""A per-process read cache that change events keep fresh.

    from monps_store import cache

    @cache.cached(ttl=300, invalidate_on=("team_quantum_dna_changed",))
    def top_teams(limit=10): ...

    cache.stats()    # {"enabled", "listening", "hits", "misses", "invalidations", "size", ...}
    cache.clear()

A result is kept per distinct arguments (bound to the signature, so ``f(5)`` and
``f(limit=5)`` are one entry), at most ``maxsize`` per function (least recently used goes
first), for at most ``ttl`` seconds. An event on one of its ``invalidate_on`` channels, from
any process (``monps_store.events``), drops the function's results: all of them, or, for a
channel mapped to an argument (``invalidate_on={"odds_changed": "match_id"}``), those for the
values the event lists (``{"match_ids": [...]}``; compared as the event encodes them, so a
``UUID``, ``Decimal``, date or int argument matches its string in the JSON). Events reach
the cache through one listener thread per process, started by the first cached call.

What it guarantees: once this process has received an event, no result read before the event
is served again; a commit of this process that published an event drops the results at once.
A result is served only while the listener is connected: until it has connected, and from a
lost connection (events may have been missed) until it is back, every call reads the database
and nothing is kept. Each caller gets its own copy (results are kept pickled), so changing a
returned object changes nothing for the next caller. What it does not: a change made without
an event (raw SQL, legacy scripts) is seen only when the ``ttl`` runs out; and between another
process's commit and the event's arrival (about a millisecond on one host) the old result can
still be served.

Inside a transaction (a unit of work, ``replica()``) calls bypass the cache: a result there may
hold the transaction's uncommitted writes, or a lagging replica's. ``DB_CACHE=off`` disables it.
"""

from __future__ import annotations

import atexit
import collections
import functools
import inspect
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from monps_store import config, database, events
from monps_store.cache_keys import forms_of
from monps_store.errors import InvalidInput

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_functions: list[_Cached] = []
_generation: collections.Counter[str] = collections.Counter()  # events seen, per channel
_counters = {"hits": 0, "misses": 0, "bypassed": 0, "invalidations": 0}


class _Cached:
    def __init__(self, fn: Callable, ttl: float | None, channels: tuple[str, ...],
                 keyed: dict[str, str], maxsize: int):
        self.fn, self.ttl, self.channels, self.maxsize = fn, ttl, channels, maxsize
        self.keyed = keyed  # channel -> the argument whose events name its values
        self.signature = inspect.signature(fn)
        for channel, argument in keyed.items():
            if argument not in self.signature.parameters:
                raise InvalidInput(f"cached {fn.__qualname__}: invalidate_on names the "
                                   f"argument {argument!r} for {channel!r}, which it does "
                                   "not take")
        self.entries: collections.OrderedDict = collections.OrderedDict()
        self.hits = self.misses = 0
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<cached {self.fn.__module__}.{self.fn.__qualname__}>"

    def __get__(self, instance: object,  # a method: bind like a function would
                owner: type | None = None) -> _Cached | functools.partial[Any]:
        return self if instance is None else functools.partial(self, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _usable():
            _count("bypassed")
            return self.fn(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = (bound.args, tuple(sorted(bound.kwargs.items())))
            hash(key)
        except TypeError:  # a call the function itself will refuse, or unhashable arguments
            _count("bypassed")
            return self.fn(*args, **kwargs)
        snapshot = _listener.ready(self.channels)
        if snapshot is None:  # not (yet, or no longer) told of changes: read, keep nothing
            _count("bypassed")
            return self.fn(*args, **kwargs)
        now = time.monotonic()
        with _lock:
            entry = self.entries.get(key)
            if entry is not None and (entry[1] is None or entry[1] > now):
                self.entries.move_to_end(key)
                self.hits += 1
                _counters["hits"] += 1
                blob = entry[0]
            else:
                blob = None
                self.misses += 1
                _counters["misses"] += 1
        if blob is not None:
            return pickle.loads(blob)
        value = self.fn(*args, **kwargs)
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # not picklable: served, not kept
            logger.debug("%r: result not kept (cannot be pickled)", self, exc_info=True)
            return value
        expires = None if self.ttl is None else now + self.ttl
        # What events name this result by, reduced once here rather than at every event.
        forms = {argument: forms_of(bound.arguments[argument]) or set()
                 for argument in set(self.keyed.values())}
        with _lock:
            # Kept only if no event (and no lost connection) came while it was read.
            if _listener.snapshot(self.channels) == snapshot:
                self.entries[key] = (blob, expires, forms)
                self.entries.move_to_end(key)
                while len(self.entries) > self.maxsize:
                    self.entries.popitem(last=False)
        return value  # the caller's own: what is kept is the pickled copy

    def clear(self) -> None:
        with _lock:
            self.entries.clear()

    def drop(self, channel: str, payload: object) -> int:
        """Drop the results an event on ``channel`` makes stale (under ``_lock``): those whose
        keyed argument matches one of the payload's values (see ``cache_keys``), else all;
        returns how many."""
        argument = self.keyed.get(channel)
        values = payload.get(f"{argument}s") if argument and isinstance(payload, dict) else None
        if not isinstance(values, list):
            count = len(self.entries)
            self.entries.clear()
            return count
        named: set = set()
        for value in values:
            forms = forms_of(value)
            if forms is None:  # a value no argument compares with: drop them all
                return self.drop(channel, None)
            named |= forms
        stale = [key for key, entry in self.entries.items()
                 if not named.isdisjoint(entry[2][argument])]
        for key in stale:
            del self.entries[key]
        return len(stale)

    def stats(self) -> dict:
        with _lock:
            return {"hits": self.hits, "misses": self.misses, "size": len(self.entries)}


def cached(ttl: float | None = 300, invalidate_on: Iterable[str] | Mapping[str, str] = (),
           maxsize: int = 256) -> Callable[[Callable[..., Any]], _Cached]:
    """Cache a read function's results (see the module docstring). ``ttl`` in seconds (None:
    until an event). ``invalidate_on``: the event channels that drop its results; as a
    mapping ``{channel: argument}``, an event whose payload lists values of that argument
    (``{"odds_changed": "match_id"}`` and a payload ``{"match_ids": [...]}``) drops only the
    results for those values, and any other event on the channel drops them all."""
    if isinstance(invalidate_on, str):
        invalidate_on = (invalidate_on,)
    keyed = dict(invalidate_on) if isinstance(invalidate_on, Mapping) else {}
    channels = tuple(dict.fromkeys(events.check_channel(c) for c in invalidate_on))
    keyed = {channel: argument for channel, argument in keyed.items() if argument}
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                            or not ttl > 0):
        raise InvalidInput(f"ttl must be a positive number of seconds or None, got {ttl!r}")
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise InvalidInput(f"maxsize must be a whole number >= 1, got {maxsize!r}")

    def decorate(fn: Callable[..., Any]) -> _Cached:
        wrapper = _Cached(fn, ttl, channels, keyed, maxsize)
        with _lock:
            _functions.append(wrapper)
        return wrapper

    return decorate


def _count(name: str) -> None:
    with _lock:
        _counters[name] += 1


def _usable() -> bool:
    settings = database.active_settings()
    if settings is None or not settings.cache:
        return False  # not initialised (the call itself says so), or DB_CACHE=off
    return not database.current().in_transaction()


def invalidate(channel: str, payload: object = None) -> None:
    """Drop the results an event on ``channel`` with ``payload`` makes stale (see
    :func:`cached`); None drops every result cached on the channel."""
    with _lock:
        _generation[channel] += 1
        dropped = 0
        for function in _functions:
            if channel in function.channels and function.entries:
                dropped += function.drop(channel, payload)
        if dropped:
            _counters["invalidations"] += 1


def clear() -> None:
    """Drop every cached result (the counters stay; ``stats()`` shows them)."""
    with _lock:
        for function in _functions:
            function.entries.clear()


def stats() -> dict:
    """Counters since the process started: ``hits``, ``misses``, ``bypassed`` (calls that
    read the database without the cache: disabled, in a transaction, or while the listener
    was not connected), ``invalidations`` (events or lost connections that dropped results),
    ``size`` (results kept), and the same per function under ``functions``."""
    settings = database.active_settings()
    with _lock:
        functions = {f"{f.fn.__module__}.{f.fn.__qualname__}": f.stats() for f in _functions}
        return {
            "enabled": bool(settings is not None and settings.cache),
            "listening": _listener.connected,
            **_counters,
            "size": sum(f["size"] for f in functions.values()),
            "functions": functions,
        }


class _Invalidator:
    """The process's listener thread: LISTENs on every channel a cached function names,
    invalidates on each event, and clears everything when its connection is lost."""

    POLL_SECONDS = 0.5  # how soon it notices a new channel, or being stopped

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.connected = False
        self.epoch = 0  # changes on every connect and loss: a read across one is not kept
        self.channels: frozenset[str] = frozenset()
        self.settings: config.Settings | None = None
        self.current: events.Listener | None = None  # the thread's Listener while it has one

    def snapshot(self, channels: tuple[str, ...]) -> tuple[int, tuple[int, ...]] | None:
        """A token that changes whenever one of ``channels`` had an event or the listener
        connected or was lost; None while results may not be served."""
        if not self.connected or not set(channels) <= self.channels:
            return None
        return self.epoch, tuple(_generation[c] for c in channels)

    def ready(self, channels: tuple[str, ...]) -> tuple[int, tuple[int, ...]] | None:
        """``snapshot``, starting the thread (or restarting it for new settings) as needed."""
        token = self.snapshot(channels)
        settings = database.active_settings()
        if token is None:
            self._start(channels)
        elif self.settings is not settings and self.settings != settings:
            self.close()  # init_db() again, with other settings
            return None
        return token

    def _start(self, channels: Iterable[str]) -> None:
        settings = database.active_settings()
        with _lock:
            wanted = frozenset().union(*(f.channels for f in _functions), channels)
            if self.thread is not None and self.thread.is_alive():
                return  # it picks up new channels itself
            self.stop.clear()
            self.settings = settings
            # Stopped before whatever was set up earlier is torn down at exit (an embedded
            # server, say), instead of being cut off by it.
            atexit.unregister(_close_listener)
            atexit.register(_close_listener)
            self.thread = threading.Thread(target=self._run, name="monps-cache-listener",
                                           daemon=True, args=(wanted,))
            self.thread.start()

    def _run(self, channels: frozenset[str]) -> None:
        try:
            self._listen(channels)
        except BaseException:  # never serve results with no listener behind them
            logger.exception("the cache listener stopped; the cache is bypassed until the "
                             "next cached call starts it again")
            raise
        finally:
            self._lost()

    def _listen(self, channels: frozenset[str]) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                listener = events.Listener(channels, on_lost=self._lost,
                                           on_reconnect=self._connected,
                                           settings=self.settings)
            except Exception as exc:  # the server is down, or listening is not possible
                pause = min(0.1 * 2 ** failures, 5.0)
                failures += 1
                log = logger.warning if failures == 1 else logger.debug
                log("cache listener cannot start (%s); the cache is bypassed until it does",
                    exc)
                self.stop.wait(pause)
                continue
            failures = 0
            self.current = listener
            with listener:
                self.channels = channels
                self._connected()
                while not self.stop.is_set():
                    event = listener.next_event(self.POLL_SECONDS)
                    if event is not None:
                        invalidate(event.channel, event.payload)
                        continue
                    with _lock:
                        wanted = frozenset().union(channels, *(f.channels for f in _functions))
                    if wanted != channels:  # a function cached on a new channel: listen anew
                        channels = wanted
                        self._lost()
                        break

    def _connected(self) -> None:
        with _lock:
            self.epoch += 1
            self.connected = True
            clear()

    def _lost(self) -> None:
        with _lock:
            if self.connected:
                _counters["invalidations"] += 1
            self.epoch += 1
            self.connected = False
            clear()

    def close(self) -> None:
        thread = self.thread
        self.stop.set()
        listener = self.current
        if listener is not None:
            listener.interrupt()  # its thread returns from the wait and closes it
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.thread = None
        self._lost()


_listener = _Invalidator()


def _after_fork_in_child() -> None:
    # The thread did not survive the fork, and its connection is the parent's.
    global _listener
    _listener = _Invalidator()
    clear()


def _close_listener() -> None:
    _listener.close()


# The cache subscribes; neither the publisher nor the database knows of it.
os.register_at_fork(after_in_child=_after_fork_in_child)
database.register_companion("cache", _close_listener, None)  # stopped by close_db()
events.on_commit_published(invalidate)  # this process's commits, at once (read-your-writes)
