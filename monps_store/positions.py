"""Read-your-writes on replicas: the WAL position of this process's last commit.

    positions.commits.note(positions.wal_position("16/B374D848"))   # after each commit
    positions.commits.required(read_current)     # what a replica must have replayed

Both pools report their commits here (sync and async commits of one process alike), so a
replica scope of either kind waits for both. When a commit's position could not be read (or
the commit was someone else's, as on a lent legacy connection), the next scope asks the
primary for its current position instead: ``read_current`` is how the caller asks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def wal_position(text: str | None) -> int:
    """A ``pg_lsn`` text (``'16/B374D848'``) as an integer, for comparisons; 0 for None."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


# The position just after a commit, read on the committing connection.
AFTER_COMMIT_SQL = "SELECT pg_current_wal_insert_lsn()::text"
# The primary's position now, when a commit's own could not be read.
CURRENT_SQL = "SELECT pg_current_wal_lsn()::text"


class CommitPositions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.position = 0
        self.unknown = False

    def note(self, position: int) -> None:
        """A commit of this process at ``position``."""
        with self._lock:
            self.position = max(self.position, position)

    def mark_unknown(self) -> None:
        """A commit whose position is not known: the next ``required`` asks the primary."""
        self.unknown = True

    def required(self, read_current: Callable[[], str | None]) -> int:
        """The position a replica must have replayed before it may serve this process;
        ``read_current()`` returns the primary's current position (``CURRENT_SQL``) and is
        called only when a commit's position is unknown."""
        if self.unknown:
            position = wal_position(read_current())
            with self._lock:
                self.position = max(self.position, position)
                self.unknown = False
        return self.position

    def reset(self) -> None:
        with self._lock:
            self.position, self.unknown = 0, False


commits = CommitPositions()
