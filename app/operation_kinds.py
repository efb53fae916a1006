"""Operation kinds: how each kind of accepted write is executed, and what it drains with.

A kind is declared where its rules live (app/points/kinds.py, app/rewards/claim_batches.py)
and registered from the one list in app/kinds.py, which the web and the workers import.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.errors import DomainError
from app.models import Operation


@dataclass(frozen=True)
class StepTaken:
    """A handler's answer when it did one step of a long operation and more remain.

    The step's writes commit with the operation left unfinished (status processing, publish
    time reset so the sweeper leaves a live job alone); the worker publishes it again for
    the next step, and the sweeper does so if the worker dies first. A handler records how
    far it got on `operation.progress`, which commits atomically with the step.
    """


Handler = Callable[[Session, Operation], "dict[str, Any] | StepTaken"]


BatchAnswers = dict[uuid.UUID, "dict[str, Any] | DomainError"]
BatchHandler = Callable[[Session, list[Operation]], BatchAnswers]


@dataclass(frozen=True)
class OperationKind:
    """How one kind of write is executed and answered.

    Exactly one of:
    - `handler` runs one operation inside a savepoint and returns the success body (or
      StepTaken); raising DomainError rolls its writes back and records the error.
    - `batch_handler` runs many operations of one partition at once and answers each
      (body or DomainError); it decides before it writes, so a refused operation has
      written nothing, and it needs no savepoints. Up to `max_batch` per call.
    `partition` names what the kind serializes on (e.g. a lane of rewards): operations of one
    partition are drained together by one worker transaction, and one drain at a time
    runs them (app/infra/drain_key.py). `drains_side_by_side` is for a partition that only
    groups work which does not serialize (award batches of one tenant, spread over many
    participants): each drain then lets the next write wake another to run alongside.
    Kinds that name the same `lane` share its partitions, so their operations drain
    together, in the order they were accepted, through the one batch handler they share
    (a participant's awards and deductions).
    """

    name: str
    handler: Handler | None = None
    batch_handler: BatchHandler | None = None
    success_status: int = 200
    retain_forever: bool = False
    partition: Callable[[dict[str, Any]], str | None] = field(default=lambda payload: None)
    max_batch: int = 200
    drains_side_by_side: bool = False
    lane: str | None = None

    @property
    def partition_prefix(self) -> str:
        return self.lane or self.name


_KINDS: dict[str, OperationKind] = {}
# A partition key's prefix (see partition_key) -> the kind whose drain settings and batch
# handler run that partition.
_DRAINED_BY: dict[str, OperationKind] = {}


def register_kind(kind: OperationKind) -> OperationKind:
    if (kind.handler is None) == (kind.batch_handler is None):
        raise ValueError(
            f"operation kind {kind.name!r} needs exactly one of handler, batch_handler"
        )
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"operation kind {kind.name!r} registered twice")
    if kind.lane is not None:
        sharing = _DRAINED_BY.get(kind.lane)
        if kind.batch_handler is None or (
            sharing is not None and sharing.batch_handler is not kind.batch_handler
        ):
            raise ValueError(f"kinds of lane {kind.lane!r} need one batch handler")
        _DRAINED_BY.setdefault(kind.lane, kind)
    _KINDS[kind.name] = kind
    _DRAINED_BY.setdefault(kind.name, kind)
    return kind


def get_kind(name: str) -> OperationKind:
    return _KINDS[name]


def lane_of(value: str, lanes: int) -> str:
    """Which of `lanes` lanes `value` (a participant, a reward) always falls in. crc32, not
    hash(): the web processes that record and the workers that drain must agree."""
    return f"lane-{zlib.crc32(value.encode()) % lanes}"


def partition_key(kind: str, tenant_id: uuid.UUID, env: str, payload: dict[str, Any]) -> str | None:
    registered = get_kind(kind)
    partition = registered.partition(payload)
    if partition is None:
        return None
    return f"{registered.partition_prefix}:{tenant_id}:{env}:{partition}"


def partition_kind(key: str) -> OperationKind:
    """The kind that drains a partition key (see partition_key): its batch handler and
    drain settings run the partition's operations, whichever kinds of its lane they are."""
    return drained_by(key.split(":", 1)[0])


def drained_by(prefix: str) -> OperationKind:
    """The kind that drains the partitions of a lane, or of a kind of no lane, by name."""
    return _DRAINED_BY[prefix]


def unregister_kind(kind: OperationKind) -> None:
    """Undo `register_kind(kind)` (for kinds that exist only for a while, such as tests')."""
    if _KINDS.get(kind.name) is not kind:
        raise ValueError(f"operation kind {kind.name!r} is not registered")
    del _KINDS[kind.name]
    for prefix in [prefix for prefix, drained_by in _DRAINED_BY.items() if drained_by is kind]:
        del _DRAINED_BY[prefix]


def kinds_retained_forever() -> list[str]:
    """Kinds whose idempotency keys are never purged."""
    return [name for name, kind in _KINDS.items() if kind.retain_forever]
