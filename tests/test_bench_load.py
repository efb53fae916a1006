"""bench.load's HTTP client against a raw socket server answering in every framing it may
meet: Content-Length, chunked, Connection: close, HTTP/1.0 until close, interim 100,
responses split over many packets, and a server that drops the connection."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bench.load import Request, drive, parse_chunked, parse_head, run_load, serialize


def _response(status: int, body: bytes, *extra: str, version: str = "HTTP/1.1") -> bytes:
    head = [f"{version} {status} X", *extra]
    if not any(line.lower().startswith("transfer-encoding") for line in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _answer(path: str, body: bytes, connection: socket.socket) -> bool:
    """Send the answer for `path`; False when the connection is to be closed."""
    ok = json.dumps({"ok": True}).encode()
    if path == "/len":
        connection.sendall(_response(200, ok, "Content-Type: application/json"))
    elif path == "/echo":
        expected = json.dumps({"participant_id": "p1"}).encode()
        connection.sendall(_response(201 if body == expected else 400, b"{}"))
    elif path == "/chunked":
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4;ext=1\r\n{"a"\r\n5\r\n: 1}\n\r\n0\r\nX-Trailer: 1\r\n\r\n'
        )
    elif path == "/chunked-error":
        document = json.dumps({"code": "chunky"}).encode()
        connection.sendall(
            b"HTTP/1.1 422 X\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(document):x}\r\n".encode()
            + document
            + b"\r\n0\r\n\r\n"
        )
    elif path == "/close":
        connection.sendall(_response(200, ok, "Connection: close"))
        return False
    elif path == "/http10":
        connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
        return False
    elif path == "/error":
        connection.sendall(_response(409, json.dumps({"code": "out_of_stock"}).encode()))
    elif path == "/unparseable":
        connection.sendall(_response(500, b"<html>oops</html>"))
    elif path == "/continue":
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + _response(204, b""))
    elif path == "/split":
        for piece in (
            b"HTTP/1.1 20",
            b"0 OK\r\nContent-Le",
            b"ngth: 10\r\n\r",
            b"\n01234",
            b"56789",
        ):
            connection.sendall(piece)
            time.sleep(0.002)
    elif path == "/drop":
        return False
    elif path == "/hang":
        time.sleep(3)
        return False
    else:
        connection.sendall(_response(404, json.dumps({"code": "not_found"}).encode()))
    return True


def _serve_connection(connection: socket.socket) -> None:
    buffer = b""
    with connection:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = connection.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:])
            }
            assert headers["host"].split(":")[0] in ("127.0.0.1", "localhost")
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                buffer += connection.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            if not _answer(lines[0].split(" ")[1], body, connection):
                return


@pytest.fixture
def server_url() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            threading.Thread(target=_serve_connection, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    listener.close()


def _run(url: str, shares: list[list[Request]]) -> list[tuple[int, float, str]]:
    out: list[tuple[int, float, str]] = []
    drive(url, shares, out, time.time())
    return out


def test_every_framing_is_measured_in_order(server_url: str) -> None:
    paths = [
        "/len",
        "/chunked",
        "/close",
        "/len",
        "/http10",
        "/error",
        "/chunked-error",
        "/unparseable",
        "/continue",
        "/split",
        "/drop",
        "/len",
        "/missing",
    ]
    out = _run(server_url, [[Request("GET", path, {}) for path in paths]])
    assert [(status, code) for status, _, code in out] == [
        (200, ""),
        (200, ""),
        (200, ""),
        (200, ""),
        (200, ""),
        (409, "out_of_stock"),
        (422, "chunky"),
        (500, "unparseable"),
        (204, ""),
        (200, ""),
        (599, "connection_error"),
        (200, ""),
        (404, "not_found"),
    ]
    assert all(latency >= 0 for _, latency, _ in out)


def test_bodies_reach_the_server_over_many_connections(server_url: str) -> None:
    claim = Request(
        "POST",
        "/echo",
        {"Content-Type": "application/json"},
        json.dumps({"participant_id": "p1"}).encode(),
    )
    out = _run(server_url, [[claim] * 50 for _ in range(8)])
    assert Counter(status for status, _, _ in out) == {201: 400}


def test_refused_connections_count_as_errors() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    out = _run(url, [[Request("GET", "/len", {})] * 3000])  # no recursion per failure
    assert Counter(code for _, _, code in out) == {"connection_error": 3000}


def test_a_request_without_answer_times_out(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.load.TIMEOUT_SECONDS", 0.5)
    out = _run(server_url, [[Request("GET", "/hang", {}), Request("GET", "/len", {})]])
    assert [(status, code) for status, _, code in out] == [(599, "connection_error"), (200, "")]
    assert 500 <= out[0][1] < 3000


def test_localhost_finds_the_address_the_server_listens_on(server_url: str) -> None:
    url = server_url.replace("127.0.0.1", "localhost")
    assert Counter(status for status, _, _ in _run(url, [[Request("GET", "/len", {})]])) == {200: 1}


def test_run_load_in_processes(server_url: str) -> None:
    requests = [Request("GET", "/len", {})] * 300 + [Request("GET", "/error", {})] * 30
    result = run_load(server_url, requests, concurrency=8)
    assert result.statuses == {200: 300, 409: 30}
    assert result.error_codes == {"out_of_stock": 30}
    assert len(result.latencies_ms) == 330
    assert result.elapsed_seconds > 0


def test_serialized_request() -> None:
    wire = serialize(Request("POST", "/a?b=1", {"X-Key": "k"}, b"{}"), "h:1")
    assert wire == (
        b"POST /a?b=1 HTTP/1.1\r\nHost: h:1\r\nAccept-Encoding: identity\r\n"
        b"Connection: keep-alive\r\nContent-Length: 2\r\nX-Key: k\r\n\r\n{}"
    )
    assert b"Content-Length: 0" in serialize(Request("POST", "/", {}), "h")
    assert b"Content-Length" not in serialize(Request("GET", "/", {}), "h")


def test_head_framing() -> None:
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5", "GET")[1:] == (1, 5, True)
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5", "HEAD")[1:] == (0, 0, True)
    assert parse_head(b"HTTP/1.1 200 OK\r\nConnection: close", "GET")[3] is False
    assert parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", "GET")[3]
    assert parse_chunked(b"3\r\nabc\r\n0\r\n", 0) is None
    assert parse_chunked(b"3\r\nabc\r\n0\r\n\r\nrest", 0) == (b"abc", 13)
