"""Sending a webhook request only to an address that was checked, over pooled connections.

The SSRF guard resolves the URL's host once, refuses the request unless every address is
allowed, then connects to a checked IP itself (Host header, TLS SNI and certificate check
still use the URL's hostname). A DNS answer that changes between the check and the
connection therefore cannot point the request elsewhere: nothing resolves the name again.
Redirects are never followed; response bodies are read up to a small limit.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError

from app.errors import DomainError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = {"http": 80, "https": 443}
RESPONSE_BODY_LIMIT_BYTES = 2048
USER_AGENT = "rewards-engine-webhooks/1"
# Resolutions are cached briefly so a busy endpoint does not pay a DNS lookup per request
# and keeps its keep-alive connections; an answer is only ever used after being checked.
DNS_CACHE_SECONDS = 30.0
MAX_POOLS = 512

# Instance metadata services hand out cloud credentials: refused even when private targets
# are allowed (AWS/GCP/Azure/OCI, AWS ECS task metadata, AWS IPv6, Alibaba).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The URL or an address it resolves to may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lowercase, IDNA-encoded, IPv6 without brackets
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == ALLOWED_SCHEMES[self.scheme] else f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise TargetRefused("URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"URL is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise TargetRefused("URL scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("URL must not contain credentials; authenticate with the signature")
    if not parts.hostname:
        raise TargetRefused("URL must name a host")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise TargetRefused("URL host is not a valid hostname") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme, host.lower(), port or ALLOWED_SCHEMES[scheme], path)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress, allow_private: bool) -> str | None:
    """Why a connection to `address` is refused, or None."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return address_refusal(embedded, allow_private)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_global or allow_private:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private:
        return "a private address"
    return "a non-public address"


def resolve_with_system(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(
    target: Target, allow_private: bool, resolve: Resolver = resolve_with_system
) -> list[IPAddress]:
    """The addresses to connect to for `target`, every one of them allowed."""
    try:
        addresses = [ipaddress.ip_address(target.host)]
    except ValueError:
        try:
            resolved = resolve(target.host, target.port)
            # A scope id ("fe80::1%eth0") is not part of the address to check.
            addresses = [ipaddress.ip_address(raw.split("%")[0]) for raw in resolved]
        except (OSError, UnicodeError) as exc:
            raise TargetRefused(f"host {target.host} does not resolve: {exc}") from None
    if not addresses:
        raise TargetRefused(f"host {target.host} does not resolve")
    for address in addresses:
        refusal = address_refusal(address, allow_private)
        if refusal is not None:
            hint = "" if allow_private else " (WEBHOOK_ALLOW_PRIVATE=true allows private targets)"
            raise TargetRefused(
                f"host {target.host} resolves to {refusal}; webhook URLs must be public{hint}"
            )
    return addresses


def validate_endpoint_url(
    url: str, allow_private: bool, resolve: Resolver = resolve_with_system
) -> None:
    """Create/update-time check: raises a 422 DomainError naming the problem."""
    try:
        checked_addresses(parse_target(url), allow_private, resolve)
    except TargetRefused as exc:
        raise DomainError("invalid_webhook_url", str(exc), 422) from None


@dataclass(frozen=True)
class SendResult:
    status: int | None = None
    body: str | None = None
    error: str | None = None
    retry_after_seconds: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


class WebhookTransport:
    """Thread-safe sender with one keep-alive pool per (target, checked address).

    One per worker process (pools hold sockets, which must not cross a fork).
    """

    def __init__(
        self,
        *,
        timeout_seconds: float,
        allow_private: bool,
        connections_per_pool: int,
        resolve: Resolver = resolve_with_system,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._timeout = urllib3.Timeout(total=timeout_seconds)
        self._allow_private = allow_private
        self._connections_per_pool = connections_per_pool
        self._resolve = resolve
        self._lock = threading.Lock()
        self._dns: dict[tuple[str, int], tuple[list[str], float]] = {}
        self._pools: OrderedDict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = (
            OrderedDict()
        )
        # The system's trust store, hostname checking on (tests pass their own CA).
        self._tls = tls_context or ssl.create_default_context()

    def _cached_resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        now = time.monotonic()
        with self._lock:
            cached = self._dns.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        addresses = self._resolve(host, port)
        with self._lock:
            self._dns[key] = (addresses, now + DNS_CACHE_SECONDS)
        return addresses

    def _pool(self, target: Target, address: IPAddress) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.host, target.port, str(address))
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            common = {
                "host": str(address),
                "port": target.port,
                "maxsize": self._connections_per_pool,
                "block": False,
                "timeout": self._timeout,
                "retries": False,
            }
            if target.scheme == "https":
                # Connect to the checked IP; SNI and the certificate check use the hostname.
                pool = urllib3.HTTPSConnectionPool(
                    **common,  # type: ignore[arg-type]
                    server_hostname=target.host,
                    assert_hostname=target.host,
                    ssl_context=self._tls,
                )
            else:
                pool = urllib3.HTTPConnectionPool(**common)  # type: ignore[arg-type]
            self._pools[key] = pool
            if len(self._pools) > MAX_POOLS:
                _, oldest = self._pools.popitem(last=False)
                oldest.close()
            return pool

    def send(self, url: str, headers: Mapping[str, str], body: bytes) -> SendResult:
        try:
            target = parse_target(url)
            addresses = checked_addresses(target, self._allow_private, self._cached_resolve)
        except TargetRefused as exc:
            return SendResult(error=f"refused: {exc}")
        request_headers = {
            **headers,
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        last_error = "no address to connect to"
        for address in addresses:
            try:
                response = self._pool(target, address).urlopen(
                    "POST",
                    target.path,
                    body=body,
                    headers=request_headers,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                    assert_same_host=False,
                )
            except NewConnectionError as exc:
                last_error = f"connection to {target.host} failed: {_reason(exc)}"
                continue  # another checked address of the same host may answer
            except (HTTPError, OSError) as exc:
                return SendResult(error=f"request to {target.host} failed: {_reason(exc)}")
            return self._read(response)
        return SendResult(error=last_error)

    @staticmethod
    def _read(response: urllib3.BaseHTTPResponse) -> SendResult:
        error: str | None = None
        try:
            raw = response.read(RESPONSE_BODY_LIMIT_BYTES + 1)
        except (HTTPError, OSError) as exc:
            response.close()
            raw, error = b"", f"reading the response failed: {_reason(exc)}"
        else:
            if len(raw) > RESPONSE_BODY_LIMIT_BYTES:
                # Not worth draining an unbounded body to keep the connection: drop it.
                response.close()
                raw = raw[:RESPONSE_BODY_LIMIT_BYTES]
        response.release_conn()
        retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return SendResult(
            status=response.status,
            body=raw.decode("utf-8", errors="replace"),
            error=error,
            retry_after_seconds=retry_after,
        )

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _reason(exc: BaseException) -> str:
    # urllib3 messages embed the pool object's repr; keep the part a person can act on.
    text = str(getattr(exc, "reason", None) or exc)
    return text.split(": ", 1)[-1][:300] if "Pool" in text else text[:300]
