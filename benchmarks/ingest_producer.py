"""The ingest's validating producer alone, no database: the CSV read, checked and cut into the
chunks the loader would COPY, medians of several runs.

    python benchmarks/ingest_producer.py [--rows 1083270] [--runs 3]

"plain" is a load's mode (lines passed on without their natural keys), "keyed" a merge's (each
line's key computed, each chunk's keys made unique). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _setup  # noqa: E402

from monps_store import ingest  # noqa: E402
from monps_store.ingest import producer, reader  # noqa: E402


def produce(path: Path, keyed: bool) -> float:
    with contextlib.ExitStack() as stack:
        mode = reader.Mode()
        mode.keyed = keyed
        name, rows = reader.open_source(path, stack, mode)
        thread = producer.Producer(rows, name, False, None, ingest.CHUNK_ROWS, "bench,bench,,",
                                    mode)
        start = time.perf_counter()
        thread.start()
        while thread.chunks.get() is not None:
            pass
        thread.join()
        if thread.error is not None:
            raise thread.error
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_083_270)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = _setup.odds_csv(args.rows)
    print(f"ingest producer alone, {args.rows:,} rows, medians of {args.runs} runs; "
          f"{_setup.machine(server=False)}")
    for keyed in (False, True):
        seconds = [produce(path, keyed) for _ in range(args.runs)]
        median = statistics.median(seconds)
        print(f"  {'keyed' if keyed else 'plain'}: {median:.2f} s ({args.rows / median:,.0f} "
              f"rows/s; runs {', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
