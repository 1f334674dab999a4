"""The ingest's producer thread: rows checked and cut into the chunks the loader COPYs.

    producer = Producer(rows, name, skip_invalid, rejects_writer, CHUNK_ROWS, prefix, mode)
    producer.start()
    while (chunk := producer.chunks.get()) is not None: ...
    if producer.error is not None: raise producer.error

It never raises into the loader's COPY (a ``read()`` exception inside ``copy_expert`` reaches
the caller as ``QueryCanceled`` with the original lost): an error ends the stream and waits in
``error`` for the consumer to raise it inside its transaction.
"""

from __future__ import annotations

import csv
import io
import queue
import threading
from dataclasses import dataclass

from monps_store import errors, partitions
from monps_store.ingest.rules import BadRow, validate

CHUNK_ROWS = 20_000
SKIP_INVALID_HINT = "pass skip_invalid=True to load the good rows"  # the CLI names its flag


@dataclass
class IngestReport:
    rows: int = 0          # data rows read
    inserted: int = 0
    updated: int = 0       # existing rows whose values changed
    unchanged: int = 0     # rows identical to what was stored
    duplicates: int = 0    # repeats of a key within one chunk of the input (the last one won)
    rejected: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated

    def summary(self) -> str:
        text = (f"{self.rows:,} rows read: {self.inserted:,} inserted, {self.updated:,} updated, "
                f"{self.unchanged:,} unchanged, {self.rejected:,} rejected in {self.seconds:.1f}s")
        if self.duplicates:
            text += f" ({self.duplicates:,} repeated keys, last one kept)"
        if self.rows and not self.changed:
            text += "; nothing changed"
        return text


class Producer(threading.Thread):
    """Validates rows and queues chunks; None ends the stream. A chunk is the rows' COPY
    lines (each starting with the audit columns, ``prefix``), their natural keys (None for a
    line the fast path took while ``mode.keyed`` was off; the whole list None when the chunk
    already holds each key once), their UTC months, the number of rows read and their match
    ids."""

    def __init__(self, rows, name, skip_invalid, rejects_writer, chunk_rows, prefix, mode):
        super().__init__(daemon=True, name="monps-ingest-validate")
        self.rows, self.source_name, self.skip_invalid = rows, name, skip_invalid
        self.rejects, self.chunk_rows, self.prefix = rejects_writer, chunk_rows, prefix
        self.mode = mode
        self.chunks: queue.Queue = queue.Queue(maxsize=2)
        self.report = IngestReport()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self):
        try:
            self._produce()
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            self.chunks.put(None)

    def _produce(self):
        try:
            self._chunk_rows()
        except UnicodeDecodeError as exc:
            raise errors.InvalidInput(f"{self.source_name}: not valid UTF-8 ({exc.reason} at byte "
                                      f"{exc.start} of a read block)") from None

    def _chunk_rows(self):
        texts, keys, months, matches = [], [], set(), set()
        prefix, buffer = self.prefix, io.StringIO()
        # "\n" as the terminator also makes the writer quote a field holding one.
        writer = csv.writer(buffer, lineterminator="\n")
        rows = 0
        for line, item in self.rows:
            rows += 1
            if type(item) is tuple:  # the fast path's
                key, text, month, match = item
                texts.append(prefix + text)
                keys.append(key)
                months.add(month)
                matches.add(match)
            else:
                try:
                    if isinstance(item, BadRow):
                        raise item
                    key = validate(item)
                except BadRow as bad:
                    self._reject(bad, line, item)
                    continue
                buffer.seek(0)
                buffer.truncate()
                writer.writerow(item)
                texts.append(prefix + buffer.getvalue())
                keys.append(key)
                months.add(partitions.month_of(key[4]))
                matches.add(key[0])
            if len(texts) == self.chunk_rows:
                if self.stop.is_set():
                    return
                self.report.rows = rows
                self._put(texts, keys, months, matches)
                texts, keys, months, matches = [], [], set(), set()
        self.report.rows = rows
        if texts:
            self._put(texts, keys, months, matches)

    def _put(self, texts: list[str], keys: list, months: set, matches: set) -> None:
        count = len(texts)
        if self.mode.keyed and None not in keys:
            # The loader merges: each key once, the last line of it (done here, in this
            # thread: in the loader's it would compete for the GIL with this one).
            last = dict(zip(keys, texts, strict=True))
            self.chunks.put((list(last.values()), None, months, count, matches))
            return
        self.chunks.put((texts, keys, months, count, matches))

    def _reject(self, bad: BadRow, line: int, fields) -> None:
        message = bad.describe(line)
        if not self.skip_invalid:
            raise errors.InvalidInput(f"{self.source_name}: {message}; nothing was written "
                                      f"({SKIP_INVALID_HINT})") from None
        self.report.rejected += 1
        if self.rejects is not None:
            self.rejects.writerow([line, message, *(fields if isinstance(fields, list) else [])])


def drain(producer: Producer) -> None:
    """Unblock a producer waiting on a full queue after the consumer stopped early."""
    while producer.is_alive():
        try:
            producer.chunks.get(timeout=0.1)
        except queue.Empty:
            pass
