"""Bookmaker odds: by match, by league and kick-off window, idempotent upserts."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

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


def upsert(rows: Iterable[dict]) -> int:
    """Insert odds rows, updating a row with the same natural key when its values changed.
    Returns how many rows were inserted or changed (re-sending the same rows gives 0)."""
    return crud.upsert_many(Odds, rows, conflict=NATURAL_KEY)
