"""The one place the Celery app is built, from the one settings object."""

from __future__ import annotations

from celery import Celery

from app.config import Settings, load_settings

QUEUE_OPERATIONS = "operations"
QUEUE_MAINTENANCE = "maintenance"
QUEUE_WEBHOOKS = "webhooks"
ALL_QUEUES = (QUEUE_OPERATIONS, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS)

TASK_EXECUTE_OPERATION = "rewards.execute_operation"
TASK_SWEEP_OPERATIONS = "rewards.sweep_operations"
TASK_DRAIN_PARTITION = "rewards.drain_partition"
TASK_DISPATCH_WEBHOOKS = "rewards.dispatch_webhooks"
TASK_SWEEP_LOTS = "rewards.sweep_lots"
TASK_SWEEP_LOT_SHARD = "rewards.sweep_lot_shard"

# After the soft limit interrupts a task, this long for it to roll back before its process
# is killed (and the task redelivered: acks are late).
HARD_TIME_LIMIT_MARGIN_SECONDS = 30.0


def create_celery(settings: Settings) -> Celery:
    celery = Celery("rewards", set_as_current=True)
    celery.conf.update(
        broker_url=settings.require_broker_url(),
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Tasks here take milliseconds; an unacked task comes back after this long only
            # if its worker vanished without the parent noticing. The sweeper republishes
            # stalled operations much sooner, so this is a backstop, kept above any
            # countdown a task uses (Redis would redeliver a longer countdown early).
            "visibility_timeout": 3600,
            "global_keyprefix": f"{settings.redis_key_prefix}celery:",
            "socket_connect_timeout": 2,
        },
        task_default_queue=QUEUE_OPERATIONS,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Late ack and reject-on-worker-lost: a task whose worker dies is redelivered; the
        # tasks are idempotent on the operation id, so running twice is harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_seconds,
        task_time_limit=settings.task_soft_time_limit_seconds + HARD_TIME_LIMIT_MARGIN_SECONDS,
        worker_send_task_events=settings.worker_send_task_events,
        task_send_sent_event=settings.worker_send_task_events,
        worker_hijack_root_logger=False,
        beat_scheduler="celery.beat:Scheduler",  # in memory: nothing to write in the cwd
        beat_schedule={
            "sweep-operations": {
                "task": TASK_SWEEP_OPERATIONS,
                "schedule": settings.sweep_interval_seconds,
                "options": {"queue": QUEUE_MAINTENANCE, "expires": settings.sweep_interval_seconds},
            },
            # Lots expire and pending points become available on the clock alone.
            "sweep-lots": {
                "task": TASK_SWEEP_LOTS,
                "schedule": settings.sweep_interval_seconds,
                "options": {"queue": QUEUE_MAINTENANCE, "expires": settings.sweep_interval_seconds},
            },
            # Retries come due from the database and a wake-up can be lost: this run picks
            # up whatever is due, every interval.
            "dispatch-webhooks": {
                "task": TASK_DISPATCH_WEBHOOKS,
                "schedule": settings.webhook_dispatch_interval_seconds,
                "options": {
                    "queue": QUEUE_WEBHOOKS,
                    "expires": settings.webhook_dispatch_interval_seconds,
                },
            },
        },
    )
    celery.conf.rewards_settings = settings
    celery.conf.include = ["workers.tasks", "workers.webhook_tasks"]
    return celery


_module_app: Celery | None = None


def __getattr__(name: str) -> Celery:
    """`workers.celery_app:app`, for the celery command (`celery -A workers.celery_app
    inspect ping`, Flower): built from the environment's settings on first use, never at
    import, so importing this module stays free of side effects."""
    global _module_app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _module_app is None:
        _module_app = create_celery(load_settings())
    return _module_app
