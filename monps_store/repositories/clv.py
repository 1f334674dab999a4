"""CLV picks of the agents: by agent, recent picks, and closing-line-value settlement."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from monps_store import audit, database, events
from monps_store.errors import InvalidInput
from monps_store.models import TrackingCLVPick, checks
from monps_store.repositories import crud


def get_by_agent(agent: str, limit: int | None = None) -> list[TrackingCLVPick]:
    """The agent's picks, newest first."""
    crud.check_window(0, limit)
    agent = checks.compare(TrackingCLVPick, "agent", agent, allow_none=False)
    query = (TrackingCLVPick.select().where(TrackingCLVPick.agent == agent)
             .order_by(TrackingCLVPick.picked_at.desc(), TrackingCLVPick.id.desc()))
    return list(query.limit(limit) if limit is not None else query)


def get_recent_picks(days: float = 7, limit: int | None = 100,
                     now: datetime.datetime | None = None) -> list[TrackingCLVPick]:
    """Picks made in the ``days`` days up to ``now`` (default: the current time), newest first."""
    crud.check_window(0, limit)
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days != days:
        raise InvalidInput(f"days must be a number, got {days!r}")
    if days < 0:
        raise InvalidInput(f"days must not be negative, got {days!r}")
    until = checks.compare(TrackingCLVPick, "picked_at", now) or audit.now()
    try:
        since = until - datetime.timedelta(days=days)
    except OverflowError:  # a window longer than the datetime range: everything up to `until`
        since = checks.EARLIEST
    query = (TrackingCLVPick.select()
             .where(TrackingCLVPick.picked_at >= since, TrackingCLVPick.picked_at <= until)
             .order_by(TrackingCLVPick.picked_at.desc(), TrackingCLVPick.id.desc()))
    return list(query.limit(limit) if limit is not None else query)


SETTLED_CHANNEL = "clv_settled"


@dataclass(frozen=True)
class Settlement:
    settled: int     # picks that got their closing odds and CLV in this run
    still_open: int  # open picks with no price collected before kick-off (yet)


# The closing price of a pick: the last one collected before kick-off for the same match,
# market and selection, from the pick's bookmaker or the reference one (the rule of
# odds.closing_prices). It is looked for first among the prices collected since the pick was
# made, the usual case, and only if there is none among the earlier ones: each lookup compares
# collected_at with the pick's own picked_at, so the executor skips the month partitions on the
# other side of it, and the natural-key index (match_id, bookmaker, market, selection,
# collected_at) serves each remaining month backwards. Positional parameters (reference, now,
# now, actor, reason): both drivers take %s.
_SETTLE = """
WITH pending AS (
    SELECT id, match_id, market, selection, picked_at, COALESCE(%s, bookmaker) AS bookmaker
    FROM public.tracking_clv_picks
    WHERE status = 'open'
), closing AS (
    SELECT p.id, COALESCE(
        (SELECT o.price FROM public.odds o
         WHERE o.match_id = p.match_id AND o.bookmaker = p.bookmaker
           AND o.market = p.market AND o.selection = p.selection
           AND o.collected_at < o.commence_time AND o.collected_at >= p.picked_at
         ORDER BY o.collected_at DESC LIMIT 1),
        (SELECT o.price FROM public.odds o
         WHERE o.match_id = p.match_id AND o.bookmaker = p.bookmaker
           AND o.market = p.market AND o.selection = p.selection
           AND o.collected_at < o.commence_time AND o.collected_at < p.picked_at
         ORDER BY o.collected_at DESC LIMIT 1)) AS price
    FROM pending p
), settled AS (
    UPDATE public.tracking_clv_picks p
    SET closing_odds = c.price,
        clv_percent = round((p.odds_taken / c.price - 1) * 100, 3),
        status = 'settled', settled_at = %s,
        updated_at = %s, updated_by = %s, change_reason = %s
    FROM closing c
    WHERE p.id = c.id AND c.price IS NOT NULL
    RETURNING p.id
)
SELECT (SELECT count(*) FROM settled), (SELECT count(*) FROM closing WHERE price IS NULL),
       (SELECT array_agg(id ORDER BY id) FROM settled)
"""


def settle(reference_bookmaker: str | None = None) -> Settlement:
    """Fill closing odds and CLV percent, ``(odds_taken / closing_odds - 1) * 100``, for every
    open pick that has a closing price, in one statement; those are marked settled. Picks
    without one stay open and are counted. Running it again settles only what is new.
    When it commits, ``clv_settled`` events carry the settled picks' ids (``{"ids": [...]}``)."""
    if reference_bookmaker is not None and not reference_bookmaker.strip():
        raise InvalidInput("the reference bookmaker must not be blank")
    info = audit.current()
    now = audit.now()
    params = (reference_bookmaker, now, now, info.actor, info.reason or "CLV settlement")
    db = database.current()
    with db.atomic():
        settled, still_open, ids = db.execute_sql(_SETTLE, params).fetchone()
        events.publish_batched(SETTLED_CHANNEL, "ids", ids or ())
    return Settlement(settled, still_open)


@dataclass(frozen=True)
class UnknownReference:
    """A reference bookmaker with no odds at all for the open picks' matches (a typo, most
    likely): settling with it would settle nothing."""
    bookmaker: str
    open_picks: int        # the open picks it was meant to price
    bookmakers: list[str]  # the bookmakers with odds for those matches (at most 20, sorted)


def unknown_reference(bookmaker: str) -> UnknownReference | None:
    """None when ``bookmaker`` has odds for some open pick's match, or no pick is open; else
    what to refuse it with, before :func:`settle`."""
    db = database.current()
    open_picks, known = db.execute_sql(
        "SELECT (SELECT count(*) FROM public.tracking_clv_picks WHERE status = 'open'), "
        "EXISTS (SELECT 1 FROM public.tracking_clv_picks p JOIN public.odds o "
        "ON o.match_id = p.match_id AND o.bookmaker = %s WHERE p.status = 'open')",
        (bookmaker,)).fetchone()
    if not open_picks or known:
        return None
    names = [b for (b,) in db.execute_sql(
        "SELECT DISTINCT o.bookmaker FROM public.tracking_clv_picks p JOIN public.odds o "
        "ON o.match_id = p.match_id WHERE p.status = 'open' ORDER BY 1 LIMIT 20")]
    return UnknownReference(bookmaker, open_picks, names)
