"""Recording accepted writes in the web process: grouped, committed, then workers woken."""

from __future__ import annotations

import logging

import redis
from celery import Celery
from sqlalchemy.engine import Engine

from app.infra.group_commit import GroupCommit
from app.infra.redis_client import RedisOutage
from app.models import Operation
from app.operations import Submission, Write, submit_operations
from workers.publish import publish_accepted

log = logging.getLogger(__name__)

# Concurrent requests of one process share an INSERT and a drain wake, up to this many.
MAX_WRITES_PER_GROUP = 64


class WriteRecorder:
    """Records a web process's accepted writes and wakes the workers for them.

    Requests that arrive together are recorded by one INSERT in autocommit (one statement,
    no BEGIN and COMMIT round trips) and their partitions woken by one Redis pipeline, run
    by one of them (app/infra/group_commit.py): a lone request pays exactly that, a busy process
    pays it once for many. Each request still hears "accepted" only after its row is
    committed.
    """

    def __init__(
        self,
        engine: Engine,
        celery: Celery,
        redis_client: redis.Redis,
        prefix: str,
        outage: RedisOutage,
    ) -> None:
        self._engine = engine
        self._celery = celery
        self._redis = redis_client
        self._prefix = prefix
        self._outage = outage
        self._groups: GroupCommit[Write, Submission] = GroupCommit(
            self._record, MAX_WRITES_PER_GROUP
        )

    def record(self, write: Write) -> Submission:
        """The write's operation, new or (a replay) the earlier one of its idempotency key."""
        return self._groups.submit(write)

    def _record(self, writes: list[Write]) -> list[Submission | Exception]:
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            answers = submit_operations(connection, writes)
        created = [
            answer.operation
            for answer in answers
            if isinstance(answer, Submission) and answer.created
        ]
        self.publish(created)
        return answers

    def publish(self, created: list[Operation]) -> None:
        """Wake the workers for operations committed as accepted: every write's one way
        to the workers (a lost publish is the sweeper's to repeat)."""
        if self._outage.suspected:
            return  # the sweeper publishes them once Redis is back
        try:
            publish_accepted(self._celery, self._redis, self._prefix, created)
        except Exception:
            self._outage.failed()
            log.warning("publish of %d operation(s) failed; the sweeper will retry", len(created))
