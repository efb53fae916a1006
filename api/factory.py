"""The Flask app factory: one runtime per process, every blueprint, one error shape."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import Celery
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel

from api.auth_cache import KeyCache
from api.errors import register_error_handlers
from api.recording import WriteRecorder
from api.request_log import install_request_log
from api.runtime import EXTENSION_KEY, ApiRuntime
from app import kinds  # noqa: F401  (registers the operation kinds the web submits)
from app.config import Settings, load_settings
from app.db import make_engine, make_session_factory
from app.infra.completion import CompletionListener
from app.infra.rate_limit import RateLimiter
from app.infra.redis_client import SOCKET_TIMEOUT_SECONDS, RedisOutage, make_redis
from app.logs import configure_logging
from app.webhooks.secret_box import SecretBox
from workers.celery_app import create_celery

JSON_BODY_LIMIT_BYTES = 1024 * 1024


class ApiJSONProvider(DefaultJSONProvider):
    sort_keys = False
    ensure_ascii = False

    @staticmethod
    def default(value: Any) -> Any:
        # ISO 8601 everywhere, never Flask's default RFC 822 dates.
        if isinstance(value, datetime):
            return value.isoformat()
        # The 23blocks dialect's views answer documents holding attribute models.
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return DefaultJSONProvider.default(value)


def _publisher(settings: Settings) -> Celery:
    """The web's Celery app. It only publishes, once, after the commit, and a publish that
    fails is covered by the sweeper: so it fails fast, instead of kombu retrying the
    connection for about 6 s (or waiting forever on a stalled broker) while the request
    thread waits; with the broker down, that starved the API of threads."""
    celery = create_celery(settings)
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "max_retries": 0,
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
    }
    return celery


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask(__name__)
    install_request_log(app, access_log_on=settings.access_log)
    app.json = ApiJSONProvider(app)
    # Endpoints that take uploads raise their own limit (see `endpoint(max_body_bytes=...)`).
    app.config["MAX_CONTENT_LENGTH"] = JSON_BODY_LIMIT_BYTES
    engine = make_engine(settings)
    redis_client = make_redis(settings)
    celery = _publisher(settings)
    redis_outage = RedisOutage()
    app.extensions[EXTENSION_KEY] = ApiRuntime(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        redis=redis_client,
        rate_limiter=RateLimiter(redis_client, settings.redis_key_prefix, redis_outage),
        celery=celery,
        recorder=WriteRecorder(
            engine, celery, redis_client, settings.redis_key_prefix, redis_outage
        ),
        completions=CompletionListener(redis_client, settings.redis_key_prefix, redis_outage),
        key_cache=KeyCache(settings.auth_cache_ttl_seconds),
        secret_box=SecretBox.from_settings(settings),
    )
    register_error_handlers(app)
    from api import audit, health, metrics, openapi, operations, points
    from api.blocks import blueprints as blocks_blueprints
    from api.blocks.jsonapi import set_media_type
    from api.console import console_blueprint
    from api.coupons import admin as coupons_admin
    from api.coupons import participant as coupons_participant
    from api.engagement import actions as engagement_actions
    from api.engagement import admin as engagement_admin
    from api.engagement import bulk as engagement_bulk
    from api.engagement import program_admin as engagement_program_admin
    from api.referrals import views as referrals
    from api.rewards import admin as rewards_admin
    from api.rewards import participant as rewards_participant
    from api.webhooks import admin as webhooks_admin

    for blueprint in (
        health.bp,
        metrics.bp,
        openapi.bp,
        operations.bp,
        rewards_participant.bp,
        rewards_admin.bp,
        webhooks_admin.bp,
        engagement_admin.bp,
        audit.bp,
        *points.blueprints,
        engagement_actions.bp,
        engagement_bulk.bp,
        engagement_program_admin.bp,
        referrals.bp,
        coupons_participant.bp,
        coupons_admin.bp,
        *blocks_blueprints(),
        console_blueprint(),
    ):
        app.register_blueprint(blueprint)
    app.after_request(set_media_type)
    return app
