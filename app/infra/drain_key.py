"""The drain-key protocol: how writes and the drains that run them agree, through one
Redis key per partition, that every committed write gets run, with one drain task per
busy partition rather than one per write.

Operations of a partitioned kind (the claims of a lane) are not published one by one: a
single "drain this partition" task is queued, coalesced on the partition's drain key, and
the worker that runs it executes every queued operation of the partition in batches
(workers/publish.py queues, workers/tasks.py drains).

The drain key says whether a drain is queued or running, and whether a write was
committed since the running drain last read the queue:
- a write, after its commit, marks the key `dirty` if it exists, and otherwise takes it
  (SET NX) and queues a drain (`DrainKey.mark_written`);
- a drain marks the key `clean` (`DrainKey.hold`) before each read of the queue;
- a drain that read fewer operations than a batch holds ends only if the key is still
  `clean` (`DrainKey.end`, one atomic compare-and-delete); otherwise it reads again.
Why no write can be missed: a write's mark comes after its commit. If the mark came
before the drain's last `hold`, the commit came before that read, which found it. If it
came between that `hold` and `end`, the key is dirty and the drain reads again. If it
came after `end`, the key was gone and the write queued a fresh drain. So a drain that
ran out of work ends with no trailing empty read of the database, and a busy partition
costs one task, not one per batch.

Before it ends, a drain with nothing else to do may wait a few milliseconds for the next
write's nudge (`await_write`, a list each write pushes to): a client that writes one
request after another then reaches a drain that is still running, not a fresh task. The
nudge is only a shortcut; `end` decides as above.

A kind that drains side by side (app/operation_kinds.py::OperationKind) frees the key as
its drain starts and ends at a batch that is not full: the next write wakes another drain
to run alongside. A lost drain only costs latency: the key expires and the sweeper
republishes operations that stay queued.
"""

from __future__ import annotations

import redis

# How long a drain key outlives its last taking: a drain queued longer than this (a deep
# backlog) no longer blocks the next one, and a drain killed mid-run blocks its partition's
# wakes no longer than this (the sweeper then republishes what it left queued). A running
# drain takes it afresh at its start and at each handover, DRAIN_TIME_BUDGET_SECONDS apart.
DRAIN_KEY_TTL_MS = 5_000


def drain_key(prefix: str, partition_key: str) -> str:
    return f"{prefix}drain:{partition_key}"


def _nudges(key: str) -> str:
    return f"{key}:nudges"


_CLEAN = "clean"
_DIRTY = "dirty"
# Deletes the key unless a write marked it since the drain's last read (an expired key
# counts as ended: the next write takes it and queues a drain).
_END_IF_CLEAN = """
local marked = redis.call('GET', KEYS[1])
if marked == ARGV[1] then return 0 end
if marked then redis.call('DEL', KEYS[1]) end
return 1
"""


# One round trip for the common case, a busy partition: a nudge is waiting (1); else
# whether other tasks wait for the worker process (0) or nothing does (-1: wait).
_NOT_NUDGED_IDLE = -1
_TAKE_NUDGE = """
if redis.call('LPOP', KEYS[1]) then return 1 end
if redis.call('LLEN', KEYS[2]) > 0 then return 0 end
return -1
"""


class DrainKey:
    """A partition's drain key, by its moves (see the module docstring for why no write
    can be missed): a write's `mark_written`, a drain's `hold`, `end` and `release`."""

    # How many answers mark_written adds to its pipeline's; the second says whether the
    # write took the key.
    MARK_ANSWERS = 4

    @staticmethod
    def mark_written(pipe: redis.client.Pipeline, key: str) -> None:
        """A write, after its commit: queue its mark on `pipe`; the second of its answers
        says whether it took the key (then it must queue a drain). It also nudges a drain
        that waits for writes (`await_write`)."""
        pipe.set(key, _DIRTY, xx=True, keepttl=True)
        pipe.set(key, _DIRTY, nx=True, px=DRAIN_KEY_TTL_MS)
        pipe.rpush(_nudges(key), 1)
        pipe.pexpire(_nudges(key), DRAIN_KEY_TTL_MS)

    def __init__(self, redis_client: redis.Redis, prefix: str, partition_key: str) -> None:
        self._redis = redis_client
        self._key = drain_key(prefix, partition_key)

    def hold(self) -> None:
        """Before a read of the queue: hold the key afresh, marked clean, whoever took it
        (the running drain is the one it stands for); the nudges of writes this read
        will see are dropped."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._key, _CLEAN, px=DRAIN_KEY_TTL_MS)
        pipe.delete(_nudges(self._key))
        pipe.execute()

    def await_write(self, seconds: float, *, unless_queued: str) -> bool:
        """Wait up to `seconds` for a write to nudge this partition (True: read again),
        unless a task waits in the list `unless_queued` (then False at once: this worker
        process is wanted). Only a shortcut: `end` still decides whether the drain ends."""
        nudged = self._redis.register_script(_TAKE_NUDGE)(keys=[_nudges(self._key), unless_queued])
        if nudged != _NOT_NUDGED_IDLE:
            return bool(nudged)
        return self._redis.blpop([_nudges(self._key)], timeout=seconds) is not None

    def end(self) -> bool:
        """After a read that did not fill a batch: free the key and end, unless a write
        was committed since that read began (then False: read again)."""
        return bool(self._redis.register_script(_END_IF_CLEAN)(keys=[self._key], args=[_DIRTY]))

    def release(self) -> None:
        """Free the key outright: the next write queues a drain."""
        self._redis.delete(self._key)
