"""A small TTL cache of API-key lookups, so most requests cost no database round trip.

A revoked key, a disabled tenant or a new scope takes effect within the TTL
(AUTH_CACHE_TTL_SECONDS, default 10 s). Unknown keys are cached too, so a flood of bad
keys cannot turn into a flood of queries; the cache is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from app.tenancy import Principal

_MISSING = object()


class KeyCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Principal | object | None:
        """The cached principal (None for a known-bad key), or _MISSING."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return _MISSING
            stored_at, principal = entry
            if time.monotonic() - stored_at > self.ttl_seconds:
                del self._entries[key_hash]
                return _MISSING
            return principal

    def put(self, key_hash: str, principal: Principal | None) -> None:
        if self.ttl_seconds <= 0:
            return
        with self._lock:
            self._entries[key_hash] = (time.monotonic(), principal)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def is_missing(value: object) -> bool:
    return value is _MISSING
