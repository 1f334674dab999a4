"""CLV picks of the agents: by agent, recent picks."""

from __future__ import annotations

import datetime

from monps_store import audit
from monps_store.errors import InvalidInput
from monps_store.models import TrackingCLVPick
from monps_store.repositories import crud


def get_by_agent(agent: str, limit: int | None = None) -> list[TrackingCLVPick]:
    """The agent's picks, newest first."""
    crud.check_window(0, limit)
    query = (TrackingCLVPick.select().where(TrackingCLVPick.agent == agent)
             .order_by(TrackingCLVPick.picked_at.desc(), TrackingCLVPick.id.desc()))
    return list(query.limit(limit) if limit is not None else query)


def get_recent_picks(days: float = 7, limit: int | None = 100,
                     now: datetime.datetime | None = None) -> list[TrackingCLVPick]:
    """Picks made in the ``days`` days up to ``now`` (default: the current time), newest first."""
    crud.check_window(0, limit)
    if days < 0:
        raise InvalidInput(f"days must not be negative, got {days!r}")
    until = now or audit.now()
    since = until - datetime.timedelta(days=days)
    query = (TrackingCLVPick.select()
             .where(TrackingCLVPick.picked_at >= since, TrackingCLVPick.picked_at <= until)
             .order_by(TrackingCLVPick.picked_at.desc(), TrackingCLVPick.id.desc()))
    return list(query.limit(limit) if limit is not None else query)
