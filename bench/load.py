"""An HTTP load generator in separate processes: keep-alive connections, one per client.

Runs `concurrency` clients split over a few processes (so the generator is not bound to one
core by the GIL), each client sending its share of the prepared requests back to back.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


@dataclass
class LoadResult:
    elapsed_seconds: float
    statuses: Counter[int]
    latencies_ms: list[float]
    error_codes: Counter[str]

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def rate(self) -> float:
        return self.requests / self.elapsed_seconds if self.elapsed_seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0


def _client(base_url: str, requests: list[Request], out: list[tuple[int, float, str]]) -> None:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    for request in requests:
        started = time.perf_counter()
        try:
            connection.request(
                request.method, request.path, body=request.body, headers=request.headers
            )
            response = connection.getresponse()
            payload = response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
            out.append((599, (time.perf_counter() - started) * 1000, "connection_error"))
            continue
        code = ""
        if status >= 400:
            try:
                code = str(json.loads(payload).get("code", ""))
            except ValueError:
                code = "unparseable"
        out.append((status, (time.perf_counter() - started) * 1000, code))
    connection.close()


def _process(base_url: str, shares: list[list[Request]], start_at: float, queue: Any) -> None:
    results: list[tuple[int, float, str]] = []
    threads = [
        threading.Thread(target=_client, args=(base_url, share, results)) for share in shares
    ]
    while time.time() < start_at:
        time.sleep(0.001)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


def run_load(
    base_url: str, requests: list[Request], concurrency: int, processes: int = 2
) -> LoadResult:
    """Send `requests` with `concurrency` clients; returns rate, statuses and latencies."""
    shares: list[list[Request]] = [requests[index::concurrency] for index in range(concurrency)]
    per_process = [shares[index::processes] for index in range(processes)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 1.5  # let every process spawn before the clock starts
    workers = [
        context.Process(target=_process, args=(base_url, group, start_at, queue))
        for group in per_process
        if group
    ]
    for worker in workers:
        worker.start()
    collected: list[tuple[int, float, str]] = []
    for _ in workers:
        collected.extend(queue.get())
    elapsed = time.time() - start_at
    for worker in workers:
        worker.join()
    return LoadResult(
        elapsed_seconds=elapsed,
        statuses=Counter(status for status, _, _ in collected),
        latencies_ms=[latency for _, latency, _ in collected],
        error_codes=Counter(code for _, _, code in collected if code),
    )
