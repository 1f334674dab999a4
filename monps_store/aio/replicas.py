"""``aio.replica()``'s standbys: the sync module's :class:`~monps_store.replicas.ReplicaSet` on
async pools, its choice run in the greenlet bridge (one implementation of the health check,
the lag limit and read-your-writes for both).
"""

from __future__ import annotations

from monps_store import replicas
from monps_store.aio.pool import AsyncMonpsDatabase


class Replicas:
    def __init__(self, primary: AsyncMonpsDatabase):
        self.primary = primary
        self.set = replicas.ReplicaSet([replicas.Replica(s, AsyncMonpsDatabase(s))
                                        for s in primary.settings.replicas])

    @property
    def members(self) -> list[replicas.Replica]:
        return self.set.members

    async def choose(self) -> replicas.Replica | None:
        """A replica fit to serve, connected for this task; None: the primary serves."""
        if not self.set.members:
            return None
        return await self.primary.run(self._choose)

    def _choose(self) -> replicas.Replica | None:  # in the bridge: sync code on async pools
        needed = replicas.required_position(self.primary)
        return self.set.choose(needed, self.primary.settings.replica_max_lag_ms)

    async def close(self) -> None:
        for member in self.set.members:
            await member.db.close_pool()

    def status(self) -> list[dict]:
        return self.set.status()
