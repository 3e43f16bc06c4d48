"""Once-a-second chores of a node process, on a daemon thread off the event loop.

Owns: the thread that every :data:`HOUSEKEEPING_SECONDS` runs the node's chores: today,
keeping RocksDB's background threads at a lower CPU priority
(``priority.lower_rocksdb_threads``; RocksDB starts pool threads lazily, so once is not
enough). Chores are system calls or file reads that do not need the event loop. Must never:
touch the Raft core, RocksDB data or anything of the event loop's, or end the process: a
chore that raises is logged once and skipped from then on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from quorumlog.node.process.priority import lower_rocksdb_threads

log = logging.getLogger("quorumlog.node")

HOUSEKEEPING_SECONDS = 1.0
Chore = Callable[[], object]
NODE_CHORES: tuple[Chore, ...] = (lower_rocksdb_threads,)


def start(
    interval: float = HOUSEKEEPING_SECONDS, chores: Sequence[Chore] = NODE_CHORES
) -> threading.Thread:
    """Run ``chores`` now and then every ``interval`` seconds, for the life of the process."""
    period = threading.Event()  # never set: waiting on it is the period
    active = list(chores)

    def run_forever() -> None:
        while True:
            for chore in list(active):
                try:
                    chore()
                except Exception:  # a chore's bug must not end the others or the node
                    log.exception("housekeeping: %s failed; skipped from now on",
                                  getattr(chore, "__name__", chore))
                    active.remove(chore)
            period.wait(interval)

    thread = threading.Thread(target=run_forever, name="housekeeping", daemon=True)
    thread.start()
    return thread
