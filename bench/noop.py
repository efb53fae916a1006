"""The Celery round-trip baseline: a no-op task on the same broker and worker count.

`python -m bench.noop --concurrency N` runs a worker for the `bench` queue only.
"""

from __future__ import annotations

import argparse

import redis
from celery import Celery

from app.config import load_settings
from workers.celery_app import create_celery

NOOP_TASK = "bench.noop"
NOOP_QUEUE = "bench"


def build_noop_celery() -> Celery:
    settings = load_settings()
    celery = create_celery(settings)
    celery.conf.include = []
    done = redis.Redis.from_url(settings.require_redis_url())

    @celery.task(name=NOOP_TASK, acks_late=True, ignore_result=True)
    def noop(done_key: str) -> None:
        done.rpush(done_key, 1)

    return celery


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    build_noop_celery().worker_main(
        [
            "worker",
            f"--hostname={args.name}",
            "--loglevel=WARNING",
            f"--queues={NOOP_QUEUE}",
            f"--concurrency={args.concurrency}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


if __name__ == "__main__":
    main()
