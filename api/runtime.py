"""What a web process holds for its lifetime: settings, database, Redis, broker producer."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.auth_cache import KeyCache
from api.recording import WriteRecorder
from app.config import Settings
from app.infra.completion import CompletionListener
from app.infra.rate_limit import RateLimiter
from app.webhooks.secret_box import SecretBox

EXTENSION_KEY = "rewards"


@dataclass
class ApiRuntime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    redis: redis.Redis
    celery: Celery
    key_cache: KeyCache
    rate_limiter: RateLimiter
    recorder: WriteRecorder
    completions: CompletionListener
    secret_box: SecretBox

    def close(self) -> None:
        """Release pooled connections (for apps built and dropped at run time, e.g. tests)."""
        self.completions.close()
        self.engine.dispose()
        self.redis.close()


def runtime() -> ApiRuntime:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
