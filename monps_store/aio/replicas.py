"""``aio.replica()``: the sync ``replica()`` rules (monps_store.replicas) for asyncio tasks.

Each standby gets an async pool of its own; the check, the lag limit, read-your-writes (the
process's last commit position, sync or async commits alike) and the read-only transaction
are the sync module's.
"""

from __future__ import annotations

import logging
import time

from monps_store import database, errors, replicas
from monps_store.aio.pool import AsyncMonpsDatabase

logger = logging.getLogger(__name__)


class _Replica:
    def __init__(self, settings):
        self.settings = settings
        self.db = AsyncMonpsDatabase(settings)
        self.state = "unchecked"
        self.retry_at = 0.0
        self.lag_ms = None

    def note(self, state: str, detail: str = "") -> None:
        replicas._Replica.note(self, state, detail)  # type: ignore[arg-type]  # same fields

    def status(self) -> dict:
        return {"url": self.settings.display_url, "state": self.state, "lag_ms": self.lag_ms,
                **self.db.pool_status()}


class Replicas:
    def __init__(self, primary: AsyncMonpsDatabase):
        self.primary = primary
        self.members = [_Replica(s) for s in primary.settings.replicas]
        self._next = 0

    async def required_position(self) -> int:
        sync_db = database.db
        if sync_db._position_unknown:  # a commit whose position could not be read
            cursor = await self.primary.aexecute_sql("SELECT pg_current_wal_lsn()::text")
            sync_db.note_position(database.wal_position(cursor.fetchone()[0]))
            sync_db._position_unknown = False
        return sync_db.commit_position

    async def choose(self) -> _Replica | None:
        """A replica fit to serve, connected for this task; None: the primary serves."""
        if not self.members:
            return None
        needed = await self.required_position()
        max_lag = self.primary.settings.replica_max_lag_ms
        start, self._next = self._next, self._next + 1
        for offset in range(len(self.members)):
            member = self.members[(start + offset) % len(self.members)]
            if member.retry_at > time.monotonic():
                continue
            try:
                await member.db.aconnect()
                cursor = await member.db.aexecute_sql(replicas._HEALTH)
                in_recovery, replayed, lag_ms = cursor.fetchone()
            except (errors.ConnectionLost, errors.PoolExhausted, errors.StatementTimeout) as exc:
                await member.db.aclose()
                member.retry_at = time.monotonic() + replicas.RETRY_SECONDS
                member.note("unreachable", database.first_line(exc))
                continue
            if replicas.judge(member, in_recovery, replayed, lag_ms, needed, max_lag):
                return member
            await member.db.aclose()
        return None

    async def close(self) -> None:
        for member in self.members:
            await member.db.close_pool()

    def status(self) -> list[dict]:
        return [member.status() for member in self.members]
