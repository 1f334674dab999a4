"""Bookmaker odds: by match, by league and kick-off window, price time series, idempotent
upserts.

The time-series reads take an optional ``since``/``until`` window on ``collected_at``: with
one, the server reads only the month partitions it covers (pruning); without one, it probes
every month's copy of the natural-key index (never a sequential scan).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator

import peewee

from monps_store import cache
from monps_store.models import Odds, checks
from monps_store.repositories import crud

NATURAL_KEY = Odds.natural_key


def get_by_match(match_id: str) -> list[Odds]:
    """Every price collected for the match, oldest first."""
    match_id = checks.compare(Odds, "match_id", match_id, allow_none=False)
    return list(Odds.select().where(Odds.match_id == match_id)
                .order_by(Odds.collected_at, Odds.bookmaker, Odds.market, Odds.selection))


def get_by_league(league: str, since: datetime.datetime | None = None,
                  until: datetime.datetime | None = None, limit: int | None = None) -> list[Odds]:
    """Prices for matches of ``league`` kicking off in ``[since, until)``, by kick-off time."""
    crud.check_window(0, limit)
    league = checks.compare(Odds, "league", league, allow_none=False)
    since = checks.compare(Odds, "commence_time", since)
    until = checks.compare(Odds, "commence_time", until)
    query = Odds.select().where(Odds.league == league)
    if since is not None:
        query = query.where(Odds.commence_time >= since)
    if until is not None:
        query = query.where(Odds.commence_time < until)
    query = query.order_by(Odds.commence_time, Odds.match_id, Odds.collected_at)
    return list(query.limit(limit) if limit is not None else query)


def _by_match(match_id: str, since: datetime.datetime | None,
              until: datetime.datetime | None) -> peewee.ModelSelect[Odds]:
    match_id = checks.compare(Odds, "match_id", match_id, allow_none=False)
    query = Odds.select().where(Odds.match_id == match_id)
    since = checks.compare(Odds, "collected_at", since)
    until = checks.compare(Odds, "collected_at", until)
    if since is not None:
        query = query.where(Odds.collected_at >= since)
    if until is not None:
        query = query.where(Odds.collected_at < until)
    return query


def _market(query: peewee.ModelSelect[Odds], market: str | None) -> peewee.ModelSelect[Odds]:
    if market is None:
        return query
    return query.where(Odds.market == checks.compare(Odds, "market", market, allow_none=False))


def price_history(match_id: str, market: str, selection: str, bookmaker: str | None = None, *,
                  since: datetime.datetime | None = None,
                  until: datetime.datetime | None = None) -> list[Odds]:
    """Every price of one selection (of every bookmaker, or of ``bookmaker``), oldest first."""
    return list(_price_history(match_id, market, selection, bookmaker, since, until))


def iter_price_history(match_id: str, market: str, selection: str,
                       bookmaker: str | None = None, *,
                       since: datetime.datetime | None = None,
                       until: datetime.datetime | None = None,
                       batch_size: int = 2000) -> Iterator[Odds]:
    """``price_history`` read ``batch_size`` rows at a time (``crud.iterate``): any length of
    history in bounded memory."""
    return crud.iterate(_price_history(match_id, market, selection, bookmaker, since, until),
                        batch_size)


def _price_history(match_id: str, market: str, selection: str, bookmaker: str | None,
                   since: datetime.datetime | None,
                   until: datetime.datetime | None) -> peewee.ModelSelect[Odds]:
    query = _market(_by_match(match_id, since, until), market).where(
        Odds.selection == checks.compare(Odds, "selection", selection, allow_none=False))
    if bookmaker is not None:
        query = query.where(
            Odds.bookmaker == checks.compare(Odds, "bookmaker", bookmaker, allow_none=False))
    return query.order_by(Odds.collected_at, Odds.bookmaker)


def _last_per_price_line(query: peewee.ModelSelect[Odds]) -> list[Odds]:
    # DISTINCT ON keeps the first row of each (bookmaker, market, selection) in this order:
    # the newest.
    return list(query.distinct(Odds.bookmaker, Odds.market, Odds.selection)
                .order_by(Odds.bookmaker, Odds.market, Odds.selection, Odds.collected_at.desc()))


@cache.cached(ttl=300, invalidate_on={"odds_changed": "match_id"})
def latest_prices(match_id: str, market: str | None = None, *,
                  since: datetime.datetime | None = None,
                  until: datetime.datetime | None = None) -> list[Odds]:
    """The newest price of each bookmaker for each selection (of ``market``, or of every
    market), ordered by bookmaker, market and selection."""
    return _last_per_price_line(_market(_by_match(match_id, since, until), market))


def closing_prices(match_id: str, market: str | None = None, *,
                   since: datetime.datetime | None = None,
                   until: datetime.datetime | None = None) -> list[Odds]:
    """The closing line: each bookmaker's last price for each selection collected before
    kick-off (``collected_at < commence_time``). CLV settlement uses the same rule."""
    query = _market(_by_match(match_id, since, until), market)
    return _last_per_price_line(query.where(Odds.collected_at < Odds.commence_time))


def best_prices(match_id: str, market: str, *, since: datetime.datetime | None = None,
                until: datetime.datetime | None = None) -> list[Odds]:
    """For each selection of ``market``, the highest of the bookmakers' latest prices (a tie
    goes to the bookmaker first by name), ordered by selection."""
    best: dict[str, Odds] = {}
    for row in latest_prices(match_id, market, since=since, until=until):
        held = best.get(row.selection)
        if held is None or row.price > held.price:  # rows come by bookmaker name
            best[row.selection] = row
    return [best[selection] for selection in sorted(best)]


def upsert(rows: Iterable[dict]) -> int:
    """Insert odds rows, updating a row with the same natural key when its values changed.
    Returns how many rows were inserted or changed (re-sending the same rows gives 0)."""
    return crud.upsert_many(Odds, rows, conflict=NATURAL_KEY)
