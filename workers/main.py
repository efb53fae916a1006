"""`rewards worker`: a Celery worker for every queue, with the periodic scheduler."""

from __future__ import annotations

import os

from celery.signals import setup_logging
from prometheus_client import start_http_server

from app.config import Settings
from app.logs import configure_logging
from app.metrics import counting_registry
from workers.celery_app import ALL_QUEUES, create_celery


def run_worker(
    settings: Settings, concurrency: int | None, beat: bool, node_name: str | None = None
) -> None:
    celery = create_celery(settings)
    # Ours, not Celery's: the same format (LOG_FORMAT) and request ids as the web's lines.
    setup_logging.connect(lambda **_: configure_logging(settings), weak=False)
    if settings.worker_metrics_port:
        # From the main process, whose prefork children write their samples to the files
        # this reads (app/metrics.py).
        start_http_server(
            settings.worker_metrics_port,
            addr=settings.worker_metrics_host,
            registry=counting_registry(),
        )
    argv = [
        "worker",
        # Unique per process, so several workers on one host can be told apart (and pinged).
        f"--hostname={node_name or f'rewards-{os.getpid()}@%h'}",
        f"--loglevel={settings.log_level}",
        f"--queues={','.join(ALL_QUEUES)}",
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if beat:
        # Embedded beat: the periodic sweeper. Several workers each running it is harmless
        # (the sweep is idempotent and skips locked rows), so any worker may carry it.
        argv.append("--beat")
    celery.worker_main(argv)
