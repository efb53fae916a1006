"""Per-process database engine and Redis client for tasks.

Built lazily in each worker process (after the prefork fork), never shared across a fork.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis
from celery import current_app
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from app.config import Settings, load_settings
from app.db import make_engine, make_session_factory
from app.infra.redis_client import make_redis


@dataclass
class WorkerRuntime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker
    redis: redis.Redis
    pid: int


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = getattr(current_app.conf, "rewards_settings", None) or load_settings()
        # One task runs at a time per process: a small pool is enough.
        engine = make_engine(settings, pool_size=2)
        _runtime = WorkerRuntime(
            settings=settings,
            engine=engine,
            session_factory=make_session_factory(engine),
            redis=make_redis(settings),
            pid=os.getpid(),
        )
    return _runtime


def reset_runtime() -> None:
    """Close this process's runtime, if built; the next `runtime()` builds it afresh from
    the current Celery app's settings (for a process whose app changes, such as tests')."""
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        _runtime.engine.dispose()
        _runtime.redis.close()
    _runtime = None
