"""A real HTTP webhook receiver on 127.0.0.1 for the webhook tests, with polling helpers."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flask.testing import FlaskClient
from standardwebhooks import Webhook

from api.webhooks.events import EVENT_DATA
from tests.builders import GAMIFY, wait_for


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes
    client_port: int
    received_at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


Responder = Callable[[ReceivedRequest], Reply]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Senders that time out, drop long bodies or get killed mid-request are part of
        # the tests; anything else is still printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WebhookReceiver:
    """Records every request, answers with `responder` (200 by default)."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[ReceivedRequest] = []
        self.responder: Responder = lambda request: Reply()
        self.in_flight = 0
        self.max_in_flight = 0
        self._changed = threading.Condition()
        self._port = port
        self._tls = tls
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self._port}/hooks"

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                declared = self.headers.get("Content-Length")
                body = self.rfile.read(int(declared)) if declared is not None else b""
                if declared is None or len(body) != int(declared):
                    # A sender cut off mid-request (a worker killed while it delivered):
                    # nothing arrived, as a real receiver sees it; the engine delivers again.
                    self.close_connection = True
                    return
                request = ReceivedRequest(
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    client_port=self.client_address[1],
                    received_at=time.monotonic(),
                )
                receiver._enter(request)
                try:
                    reply = receiver.responder(request)
                    if reply.delay_seconds:
                        time.sleep(reply.delay_seconds)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                finally:
                    receiver._leave()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _enter(self, request: ReceivedRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()

    def _leave(self) -> None:
        with self._changed:
            self.in_flight -= 1

    def wait_for(
        self, predicate: Callable[[list[ReceivedRequest]], bool], timeout: float = 20
    ) -> list[ReceivedRequest]:
        """Wait until `predicate(requests)` holds; return the requests seen so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"receiver: condition not met in {timeout}s; "
                        f"{len(self.requests)} request(s) received"
                    )
                self._changed.wait(remaining)
            return list(self.requests)

    def wait_for_requests(self, count: int, timeout: float = 20) -> list[ReceivedRequest]:
        return self.wait_for(lambda requests: len(requests) >= count, timeout)

    def webhook_ids(self) -> set[str]:
        with self._changed:
            return {request.webhook_id for request in self.requests}


def free_port() -> int:
    """A port nothing listens on now (for a receiver that is down at first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def create_webhook(
    client: FlaskClient,
    admin_headers: dict[str, str],
    url: str,
    events: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"url": url, "events": events or ["reward.reward_claimed"], **fields}
    response = client.post(f"{GAMIFY}/admin/webhooks", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    return dict(response.json)


def list_deliveries(
    client: FlaskClient, admin_headers: dict[str, str], webhook_id: str, **query: Any
) -> list[dict[str, Any]]:
    response = client.get(
        f"{GAMIFY}/admin/webhooks/{webhook_id}/deliveries",
        query_string=query,
        headers=admin_headers,
    )
    assert response.status_code == 200, response.json
    return list(response.json["items"])


def wait_for_deliveries(
    client: FlaskClient,
    admin_headers: dict[str, str],
    webhook_id: str,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 20,
) -> list[dict[str, Any]]:
    return wait_for(
        lambda: list_deliveries(client, admin_headers, webhook_id, page_size=100),
        predicate,
        timeout,
        "deliveries to reach the expected state",
        interval=0.1,
    )


def verified_event(secret: str | bytes, request: ReceivedRequest) -> dict[str, Any]:
    """The delivered event, signed with `secret` (Standard Webhooks; bytes: a raw key) and
    as the OpenAPI document's `webhooks` describe its type (api/webhooks/events.py: no field
    more, none missing)."""
    payload = dict(Webhook(secret).verify(request.body, request.headers))
    EVENT_DATA[payload["type"]].model_validate(payload["data"])
    return payload
