"""Group commit: concurrent callers hand their items to one of them, who does one round trip.

A web process serves many requests at once (greenlets under `rewards serve`, threads
elsewhere). Each would otherwise pay its own round trip (a rate-limit decision in Redis, an
INSERT in PostgreSQL) whose fixed cost, in Python and in the server, dwarfs the work per
item. A `GroupCommit` lets the first caller flush at once (nothing is added when it is
alone); callers arriving while a flush is under way queue up, and the next flush, run by
one of them, takes them all together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# `flush` answers each item with its result, or with an exception raised to its caller only.
Flush = Callable[[list[ItemT]], Sequence["ResultT | Exception"]]


class _Slot(Generic[ItemT, ResultT]):
    __slots__ = ("answer", "answered", "item", "woken")

    def __init__(self, item: ItemT) -> None:
        self.item = item
        self.answer: ResultT | BaseException | None = None
        self.answered = False
        # Released when the answer is in, or when the caller is handed the next flush. A
        # held lock is the cheapest one-shot signal between threads (an Event builds a
        # Condition), and every request pays for one.
        self.woken = threading.Lock()
        self.woken.acquire()


class GroupCommit(Generic[ItemT, ResultT]):
    """Runs `flush` over the items of concurrent `submit` calls, up to `max_group` at a time.

    `flush` must answer every item, in order. If it raises, every caller of that group gets
    the exception (e.g. the database is down: each request answers 503 as it would alone).
    """

    def __init__(self, flush: Flush[ItemT, ResultT], max_group: int) -> None:
        self._flush = flush
        self._max_group = max_group
        self._lock = threading.Lock()
        self._pending: list[_Slot[ItemT, ResultT]] = []
        self._flushing = False

    @property
    def queued(self) -> int:
        """Callers waiting for the next flush (the one under way excluded)."""
        with self._lock:
            return len(self._pending)

    def submit(self, item: ItemT) -> ResultT:
        slot: _Slot[ItemT, ResultT] = _Slot(item)
        with self._lock:
            self._pending.append(slot)
            leading = not self._flushing
            self._flushing = True
        if not leading:
            slot.woken.acquire()
        if not slot.answered:  # first in, or handed the next flush by the previous flusher
            self._flush_next_group()
        if isinstance(slot.answer, BaseException):
            raise slot.answer
        return slot.answer  # type: ignore[return-value]

    def _flush_next_group(self) -> None:
        # The flusher's own slot is first in line: whoever flushes always takes the head.
        with self._lock:
            group = self._pending[: self._max_group]
            del self._pending[: len(group)]
        try:
            answers = self._flush([slot.item for slot in group])
            if len(answers) != len(group):
                raise RuntimeError(f"flush answered {len(answers)} of {len(group)} items")
            for slot, answer in zip(group, answers, strict=True):
                slot.answer = answer
        except BaseException as exc:
            for slot in group:
                slot.answer = exc
        finally:
            for slot in group:
                slot.answered = True
            with self._lock:
                successor = self._pending[0] if self._pending else None
                self._flushing = successor is not None
            for slot in group:
                if slot.woken.locked():
                    slot.woken.release()
            if successor is not None:
                successor.woken.release()
