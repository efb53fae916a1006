"""An HTTP load generator in separate processes: keep-alive connections, one per client.

Runs `concurrency` clients split over a few processes, each client sending its share of the
prepared requests back to back over its own keep-alive connection. The generator shares the
machine with the server it measures, so it is built to cost little CPU per request: each
process drives all of its connections from one epoll (or poll) loop (no threads, no GIL
hand-offs), every request's bytes are serialized once before the clock starts, and responses
are parsed only as far as needed (status line, the headers that frame the body, the body).
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import select
import socket
import statistics
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_SECONDS = 120.0  # a request with no progress for this long counts as an error
_RECV_SIZE = 262_144
_MAX_HEAD = 65_536  # a response head larger than this is a protocol error
_METHODS_EXPECTING_BODY = {"PATCH", "POST", "PUT"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` of the sorted `values` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class LoadResult:
    elapsed_seconds: float
    statuses: Counter[int]
    latencies_ms: list[float]
    error_codes: Counter[str]
    cpu_seconds: float = 0.0  # the load processes' own CPU from the start of the clock

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def rate(self) -> float:
        return self.requests / self.elapsed_seconds if self.elapsed_seconds else 0.0

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0


def serialize(request: Request, host: str) -> bytes:
    """The request's bytes on the wire (HTTP/1.1, keep-alive); the headers http.client would
    add (Host, Accept-Encoding: identity, Content-Length) unless the request sets them."""
    given = {name.lower() for name in request.headers}
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {host}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    if "connection" not in given:
        lines.append("Connection: keep-alive")
    body = request.body
    if "content-length" not in given and "transfer-encoding" not in given:
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif request.method.upper() in _METHODS_EXPECTING_BODY:
            lines.append("Content-Length: 0")
    for name, value in request.headers.items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class ProtocolError(Exception):
    """A response this generator cannot frame: counted as a connection error."""


# How a response's body ends.
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


def parse_head(head: bytes, method: str) -> tuple[int, int, int, bool]:
    """(status, body framing, content length, keep the connection) from a response head
    (the bytes before CRLFCRLF)."""
    lines = head.decode("latin-1").lower().split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("http/1.") or len(rest) < 3 or not rest[:3].isdigit():
        raise ProtocolError(f"bad status line {lines[0]!r}")
    status = int(rest[:3])
    length = -1
    chunked = False
    encoded = False
    tokens: list[str] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError(f"bad header line {line!r}")
        name = name.rstrip()
        if name == "content-length":
            try:
                value_length = int(value.strip())
            except ValueError:
                raise ProtocolError(f"bad content-length {value!r}") from None
            if value_length < 0 or (length >= 0 and value_length != length):
                raise ProtocolError(f"bad content-length {value!r}")
            length = value_length
        elif name == "transfer-encoding":
            codings = [coding.strip() for coding in value.split(",") if coding.strip()]
            encoded = True
            chunked = bool(codings) and codings[-1] == "chunked"
        elif name == "connection":
            tokens.extend(token.strip() for token in value.split(","))
    if version == "http/1.0":
        keep = "keep-alive" in tokens and "close" not in tokens
    else:
        keep = "close" not in tokens
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, _NONE, 0, keep
    if encoded:
        if chunked:
            return status, _CHUNKED, 0, keep
        return status, _UNTIL_CLOSE, 0, False
    if length >= 0:
        return status, _LENGTH, length, keep
    return status, _UNTIL_CLOSE, 0, False


def parse_chunked(buffer: bytes, start: int) -> tuple[bytes, int] | None:
    """(decoded body, end offset) of a complete chunked body from `start`, or None while
    more bytes are needed."""
    parts = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            if len(buffer) - position > 4096:
                raise ProtocolError("chunk size line too long")
            return None
        size_text = buffer[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text!r}") from None
        if size < 0:
            raise ProtocolError(f"bad chunk size {size_text!r}")
        position = line_end + 2
        if size == 0:
            break
        if len(buffer) < position + size + 2:
            return None
        if buffer[position + size : position + size + 2] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        parts.append(buffer[position : position + size])
        position += size + 2
    while True:  # trailer fields, up to an empty line
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        if line_end == position:
            return b"".join(parts), line_end + 2
        position = line_end + 2


def _code(status: int, body: bytes) -> str:
    if status < 400:
        return ""
    try:
        document = json.loads(body)
    except ValueError:
        return "unparseable"
    if not isinstance(document, dict):
        return "unparseable"
    return str(document.get("code", ""))


# Connection states.
_IDLE, _CONNECTING, _SENDING, _READING = range(4)
# Poll events (the same values for epoll and poll); errors and hang-ups wake both handlers,
# which then meet the error (or the end of the stream) in send, recv or SO_ERROR.
_READ, _WRITE = select.POLLIN, select.POLLOUT
_READABLE = select.POLLIN | select.POLLERR | select.POLLHUP
_WRITABLE = select.POLLOUT | select.POLLERR | select.POLLHUP


class _Client:
    """One keep-alive connection sending its requests one after another."""

    __slots__ = (
        "address",
        "body_start",
        "buffer",
        "by_fd",
        "family",
        "fd",
        "framing",
        "keep",
        "length",
        "loop",
        "mask",
        "method",
        "next_index",
        "out",
        "payload",
        "poller",
        "requests",
        "sent",
        "sock",
        "started",
        "state",
        "status",
    )

    def __init__(
        self,
        address: Any,
        family: int,
        requests: list[tuple[bytes, str]],
        out: list[tuple[int, float, str]],
        loop: _Loop,
    ) -> None:
        self.address = address
        self.family = family
        self.requests = requests
        self.next_index = 0
        self.out = out
        self.loop = loop
        self.poller = loop.poller
        self.by_fd = loop.by_fd
        self.fd = -1
        self.sock: socket.socket | None = None
        self.mask = 0
        self.state = _IDLE
        self.payload = b""
        self.sent = 0
        self.method = ""
        self.started = 0.0
        self._reset_response()

    def _reset_response(self) -> None:
        self.buffer = b""
        self.body_start = -1
        self.framing = _NONE
        self.length = 0
        self.status = 0
        self.keep = True

    # -- sending -------------------------------------------------------------------------

    def start_next(self) -> None:
        """Begin the next request (connecting first if there is no connection), if any."""
        if self.next_index >= len(self.requests):
            self.state = _IDLE
            self.close()
            self.loop.remaining -= 1
            return
        self.payload, self.method = self.requests[self.next_index]
        self.next_index += 1
        self.sent = 0
        self._reset_response()
        self.started = time.perf_counter()
        if self.sock is None:
            self._connect()
        else:
            self.state = _SENDING
            self._send()

    def _connect(self) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.fd = sock.fileno()
        self.mask = 0
        self.state = _CONNECTING
        result = sock.connect_ex(self.address)
        if result == 0:
            self.state = _SENDING
            self._send()
        elif result in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR):
            self._want(_WRITE)
        else:
            self.fail()

    def _want(self, mask: int) -> None:
        if mask == self.mask:
            return
        assert self.sock is not None
        if self.mask:
            self.poller.modify(self.fd, mask)
        else:
            self.poller.register(self.fd, mask)
            self.by_fd[self.fd] = self
        self.mask = mask

    def _send(self) -> None:
        assert self.sock is not None
        try:
            if self.sent:
                self.sent += self.sock.send(memoryview(self.payload)[self.sent :])
            else:
                self.sent = self.sock.send(self.payload)
        except (BlockingIOError, InterruptedError):
            self._want(_WRITE)
            return
        except OSError:
            self.fail()
            return
        if self.sent < len(self.payload):
            self._want(_WRITE)
        else:
            self.state = _READING
            self._want(_READ)

    def on_writable(self) -> None:
        if self.state == _CONNECTING:
            assert self.sock is not None
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.fail()
                return
            self.state = _SENDING
        if self.state == _SENDING:
            self._send()

    # -- receiving -----------------------------------------------------------------------

    def on_readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.fail()
            return
        if self.state != _READING:
            # Bytes (or a close) from the server while no request is outstanding, or
            # before this request was fully sent: the server gave up on the connection.
            if not data or self.state == _SENDING:
                self.fail()
            return
        if not data:
            if self.body_start >= 0 and self.framing == _UNTIL_CLOSE:
                self._finish(self.buffer[self.body_start :], b"")
            else:
                self.fail()
            return
        self.buffer = self.buffer + data if self.buffer else data
        try:
            self._parse()
        except ProtocolError:
            self.fail()

    def _parse(self) -> None:
        while True:
            buffer = self.buffer
            if self.body_start < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > _MAX_HEAD:
                        raise ProtocolError("response head too large")
                    return
                self.status, self.framing, self.length, self.keep = parse_head(
                    buffer[:end], self.method
                )
                self.body_start = end + 4
                if 100 <= self.status < 200:  # an interim response: the final one follows
                    self.buffer = buffer[self.body_start :]
                    self.body_start = -1
                    continue
            framing = self.framing
            if framing == _LENGTH:
                end = self.body_start + self.length
                if len(buffer) < end:
                    return
                self._finish(buffer[self.body_start : end], buffer[end:])
            elif framing == _NONE:
                self._finish(b"", buffer[self.body_start :])
            elif framing == _CHUNKED:
                decoded = parse_chunked(buffer, self.body_start)
                if decoded is None:
                    return
                self._finish(decoded[0], buffer[decoded[1] :])
            return  # _UNTIL_CLOSE: wait for the end of the stream

    def _finish(self, body: bytes, leftover: bytes) -> None:
        status = self.status
        self.out.append((status, (time.perf_counter() - self.started) * 1000, _code(status, body)))
        if not self.keep or leftover:
            self.close()  # the server closes (or sent more than asked for): reconnect
        self.state = _IDLE
        self.start_next()

    # -- errors and shutdown -------------------------------------------------------------

    def fail(self) -> None:
        """The current request failed on the connection: count it, and reconnect for the
        next one from the loop (not from here, so a refused connection cannot recurse)."""
        self.out.append((599, (time.perf_counter() - self.started) * 1000, "connection_error"))
        self.close()
        self.state = _IDLE
        self.loop.restart.append(self)

    def close(self) -> None:
        if self.sock is not None:
            if self.mask:
                self.poller.unregister(self.fd)
                del self.by_fd[self.fd]
            self.sock.close()
            self.sock = None
            self.fd = -1
            self.mask = 0


class _Loop:
    """What a process's clients share: the poller and which client owns which descriptor,
    how many clients still have requests, and the clients whose request failed (to start
    their next one from the loop)."""

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self.poller: Any = select.epoll()
            self.timeout = 1.0  # epoll takes seconds
        else:
            self.poller = select.poll()
            self.timeout = 1000  # poll takes milliseconds
        self.by_fd: dict[int, _Client] = {}
        self.remaining = 0
        self.restart: list[_Client] = []

    def close(self) -> None:
        if hasattr(self.poller, "close"):
            self.poller.close()


def _address(hostname: str, port: int) -> tuple[int, Any]:
    """The first of the name's addresses that accepts a connection (as http.client tries
    them in turn), so that "localhost" works whichever of ::1 and 127.0.0.1 the server
    listens on; a single address is used as is."""
    found = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    if len(found) > 1:
        for family, _, _, _, address in found:
            try:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.settimeout(5)
                    probe.connect(address)
            except OSError:
                continue
            return family, address
    return found[0][0], found[0][4]


def _prepare(base_url: str, shares: list[list[Request]]) -> tuple[int, Any, list[Any]]:
    """The server's address and every share's requests as (wire bytes, method)."""
    parts = urlsplit(base_url)
    hostname = parts.hostname or "localhost"
    port = parts.port or 80
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port != 80:
        host = f"{host}:{port}"
    family, address = _address(hostname, port)
    cache: dict[int, tuple[bytes, str]] = {}
    prepared = []
    for share in shares:
        wire = []
        for request in share:
            entry = cache.get(id(request))
            if entry is None:
                entry = cache[id(request)] = (serialize(request, host), request.method.upper())
            wire.append(entry)
        prepared.append(wire)
    return family, address, prepared


def drive(
    base_url: str,
    shares: list[list[Request]],
    out: list[tuple[int, float, str]],
    start_at: float,
    cpu: list[float] | None = None,
) -> None:
    """Send every share's requests from one loop; `cpu`, if given, gets this process's CPU
    seconds from `start_at` to the end (process start-up and preparation left out)."""
    family, address, prepared = _prepare(base_url, shares)
    loop = _Loop()
    clients = [_Client(address, family, wire, out, loop) for wire in prepared if wire]
    loop.remaining = len(clients)
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    cpu_started = time.process_time()
    for client in clients:
        client.start_next()
    next_check = time.perf_counter() + 1.0
    poll, timeout, by_fd, restart = loop.poller.poll, loop.timeout, loop.by_fd, loop.restart
    while loop.remaining:
        while restart:
            restart.pop().start_next()
        if not loop.remaining:
            break
        for fd, events in poll(timeout):
            owner = by_fd.get(fd)
            if owner is None:
                continue  # a descriptor closed since, by an earlier event of this batch
            if events & _WRITABLE:
                owner.on_writable()
            if events & _READABLE and owner.fd == fd:
                owner.on_readable()
        now = time.perf_counter()
        if now >= next_check:
            next_check = now + 1.0
            for client in clients:
                if client.state != _IDLE and now - client.started > TIMEOUT_SECONDS:
                    client.fail()
    loop.close()
    if cpu is not None:
        cpu.append(time.process_time() - cpu_started)


def _process(base_url: str, shares: list[list[Request]], start_at: float, queue: Any) -> None:
    results: list[tuple[int, float, str]] = []
    cpu: list[float] = []
    try:
        drive(base_url, shares, results, start_at, cpu)
    except BaseException:
        queue.put(traceback.format_exc())  # the parent raises it: no silent short count
        raise
    queue.put((results, cpu[0]))


def run_load(
    base_url: str,
    requests: list[Request],
    concurrency: int,
    processes: int = 2,
    at_start: Callable[[], object] | None = None,
) -> LoadResult:
    """Send `requests` with `concurrency` clients; returns rate, statuses and latencies.

    `at_start` is called when the clock starts, once the load processes have spawned: a
    caller reading counters around the load leaves their start-up out."""
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
    if at_start is not None:
        time.sleep(max(0.0, start_at - time.time()))
        at_start()
    collected: list[tuple[int, float, str]] = []
    cpu_seconds = 0.0
    for _ in workers:
        while True:
            try:
                share = queue.get(timeout=1.0)
                break
            except Empty:
                if any(worker.exitcode not in (None, 0) for worker in workers):
                    raise RuntimeError("a load process died without its results") from None
        if isinstance(share, str):
            for worker in workers:
                worker.terminate()
            raise RuntimeError(f"a load process failed:\n{share}")
        collected.extend(share[0])
        cpu_seconds += share[1]
    elapsed = time.time() - start_at
    for worker in workers:
        worker.join()
    return LoadResult(
        elapsed_seconds=elapsed,
        statuses=Counter(status for status, _, _ in collected),
        latencies_ms=[latency for _, latency, _ in collected],
        error_codes=Counter(code for _, _, code in collected if code),
        cpu_seconds=cpu_seconds,
    )
