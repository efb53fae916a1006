"""Paced reads beside a load: GET one path at a steady rate from a separate process, with
a few keep-alive connections, and report the latencies (e.g. leaderboard reads while
actions flow)."""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
from typing import Any
from urllib.parse import urlsplit

READER_THREADS = 16


def _reader(
    base_url: str,
    path: str,
    headers: dict[str, str],
    interval: float,
    stop: Any,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    due = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        due += interval
        started = time.perf_counter()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            status = 0
        latencies.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1


def _process(
    base_url: str, path: str, headers: dict[str, str], rate: float, stop: Any, queue: Any
) -> None:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    interval = READER_THREADS / rate
    threads = [
        threading.Thread(
            target=_reader,
            args=(base_url, path, headers, interval, stop, latencies, statuses),
            daemon=True,
        )
        for _ in range(READER_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, statuses))


class PacedReads:
    """Start with `start()`, stop with `stop()`: (latencies in ms, statuses)."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str], rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._queue = context.Queue()
        self._process = context.Process(
            target=_process, args=(base_url, path, headers, rate, self._stop, self._queue)
        )

    def start(self) -> None:
        self._process.start()

    def stop(self) -> tuple[list[float], dict[int, int]]:
        self._stop.set()
        latencies, statuses = self._queue.get(timeout=60)
        self._process.join(timeout=30)
        return latencies, statuses
