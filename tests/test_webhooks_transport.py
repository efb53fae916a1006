"""Signing and the HTTP transport against a real receiver on 127.0.0.1 (no worker)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from app.webhooks.signing import (
    caller_secret_problem,
    generate_secret,
    signature_header,
    signing_key,
)
from app.webhooks.transport import (
    RESPONSE_BODY_LIMIT_BYTES,
    WebhookTransport,
    address_refusal,
    parse_retry_after,
)
from tests.webhook_receiver import Reply, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def _transport(allow_private: bool = True, **kwargs: object) -> WebhookTransport:
    options: dict[str, object] = {
        "timeout_seconds": 2.0,
        "allow_private": allow_private,
        "connections_per_pool": 4,
        **kwargs,
    }
    return WebhookTransport(**options)  # type: ignore[arg-type]


def _signed_headers(secrets: list[str], body: bytes, message_id: str = "msg_1") -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, message_id, timestamp, body),
    }


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = generate_secret()
    body = b'{"type":"points.awarded","timestamp":"2026-01-01T00:00:00Z","data":{"n":"\xc3\xa9"}}'
    headers = _signed_headers([secret], body)
    assert Webhook(secret).verify(body, headers)["data"] == {"n": "é"}
    assert headers["webhook-signature"].startswith("v1,")


def test_during_rotation_either_secret_verifies_and_a_stranger_does_not() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"type":"webhook.test","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = _signed_headers([new, old], body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(generate_secret()).verify(body, headers)


KEY_24 = bytes(range(24))


@pytest.mark.parametrize(
    ("secret", "key", "verifier_secret"),
    [
        # whsec_ and valid base64 (padded or not): the decoded bytes, as the libraries read it.
        ("whsec_" + base64.b64encode(KEY_24).decode(), KEY_24, None),
        ("whsec_" + base64.b64encode(KEY_24[:17]).decode().rstrip("="), KEY_24[:17], None),
        # The document's example is not base64 after whsec_: the whole string's bytes, what
        # the libraries take as a raw secret (bytes in Python, format "raw" in JavaScript).
        ("whsec_your_secret_key", b"whsec_your_secret_key", b"whsec_your_secret_key"),
        ("my-own-signing-secret!", b"my-own-signing-secret!", b"my-own-signing-secret!"),
    ],
)
def test_a_callers_secret_signs_with_the_key_the_standard_webhooks_libraries_read(
    secret: str, key: bytes, verifier_secret: bytes | None
) -> None:
    assert caller_secret_problem(secret) is None
    assert signing_key(secret) == key
    body = b'{"type":"webhook.test","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = _signed_headers([secret], body, "msg_9")
    Webhook(verifier_secret if verifier_secret is not None else secret).verify(body, headers)
    by_hand = hmac.new(
        key, b"msg_9." + headers["webhook-timestamp"].encode() + b"." + body, hashlib.sha256
    ).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(by_hand).decode()


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("fifteen-chars-x", "16 to 200 printable ASCII"),
        ("x" * 201, "16 to 200 printable ASCII"),
        ("has a blank in the middle", "16 to 200 printable ASCII"),
        ("tab\tseparated-secret", "16 to 200 printable ASCII"),
        ("non-ascii-sécret-value", "16 to 200 printable ASCII"),
        # Libraries would verify with 12 decoded bytes: too short a key.
        ("whsec_" + base64.b64encode(bytes(12)).decode(), "at least 16 bytes"),
    ],
)
def test_a_callers_secret_is_refused_when_it_breaks_the_rule(secret: str, problem: str) -> None:
    assert problem in (caller_secret_problem(secret) or "")


def test_transport_connects_to_the_checked_address_with_the_original_host(
    receiver: WebhookReceiver,
) -> None:
    port = int(receiver.url.split(":")[2].split("/")[0])
    resolutions: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolutions.append(host)
        return ["127.0.0.1"]

    transport = _transport(resolve=resolve)
    try:
        url = f"http://hooks.example.test:{port}/in?x=1"
        for _ in range(3):
            result = transport.send(url, {"webhook-id": "m"}, b"{}")
            assert result.succeeded, result
    finally:
        transport.close()
    # The name is not in any DNS: the requests went to the address the guard checked.
    assert {r.headers["host"] for r in receiver.requests} == {f"hooks.example.test:{port}"}
    assert receiver.requests[0].path == "/in?x=1"
    # Resolved once and cached; the three requests shared one keep-alive connection.
    assert resolutions == ["hooks.example.test"]
    assert len({r.client_port for r in receiver.requests}) == 1


def test_transport_refuses_when_any_resolved_address_is_private(
    receiver: WebhookReceiver,
) -> None:
    transport = _transport(
        allow_private=False, resolve=lambda host, port: ["93.184.215.14", "127.0.0.1"]
    )
    try:
        result = transport.send("http://rebind.example.test/hooks", {}, b"{}")
    finally:
        transport.close()
    assert not result.succeeded
    assert result.error is not None
    assert result.error.startswith("refused: host rebind.example.test resolves to a loopback")
    assert receiver.requests == []


def test_transport_refuses_loopback_and_metadata_literals_when_private_is_off(
    receiver: WebhookReceiver,
) -> None:
    transport = _transport(allow_private=False)
    try:
        for url in (receiver.url, "http://169.254.169.254/latest/meta-data/"):
            result = transport.send(url, {}, b"{}")
            assert result.error is not None and result.error.startswith("refused:")
    finally:
        transport.close()
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("127.0.0.1", False, "a loopback address"),
        ("127.0.0.1", True, None),
        ("169.254.169.254", True, "a cloud metadata address"),
        ("169.254.1.1", False, "a link-local address"),
        ("fe80::1", False, "a link-local address"),
        ("fd00:ec2::254", True, "a cloud metadata address"),
        ("::ffff:10.0.0.1", False, "a private address"),
        ("2002:7f00:1::", False, "a loopback address"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True, "a cloud metadata address"),  # NAT64 169.254.169.254
        ("100.64.0.1", False, "a non-public address"),
        ("224.0.0.1", True, "a multicast address"),
        ("93.184.215.14", False, None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", False, None),
    ],
)
def test_address_policy(address: str, allow_private: bool, refused: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address), allow_private) == refused


def test_redirects_are_not_followed(receiver: WebhookReceiver) -> None:
    receiver.responder = lambda request: Reply(302, headers={"Location": "http://127.0.0.1:1/"})
    transport = _transport()
    try:
        result = transport.send(receiver.url, {}, b"{}")
    finally:
        transport.close()
    assert (result.status, result.succeeded) == (302, False)
    assert len(receiver.requests) == 1


def test_response_body_is_truncated(receiver: WebhookReceiver) -> None:
    receiver.responder = lambda request: Reply(500, b"e" * 100_000)
    transport = _transport()
    try:
        first = transport.send(receiver.url, {}, b"{}")
        second = transport.send(receiver.url, {}, b"{}")  # the dropped connection is replaced
    finally:
        transport.close()
    assert first.body == "e" * RESPONSE_BODY_LIMIT_BYTES
    assert second.status == 500


def test_slow_receiver_times_out(receiver: WebhookReceiver) -> None:
    receiver.responder = lambda request: Reply(200, delay_seconds=1.5)
    transport = _transport(timeout_seconds=0.5)
    started = time.monotonic()
    try:
        result = transport.send(receiver.url, {}, b"{}")
    finally:
        transport.close()
    assert time.monotonic() - started < 1.4
    assert result.error is not None and "timed out" in result.error
    assert result.status is None


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = time.time()
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 60))
    in_a_minute = parse_retry_after(date, now)
    assert in_a_minute is not None and 58 <= in_a_minute <= 61


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.test (made with the openssl CLI)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=hooks.example.test",
            "-addext", "subjectAltName=DNS:hooks.example.test",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_uses_the_hostname_for_sni_and_the_certificate_check(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_names: list[str | None] = []
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.sni_callback = lambda sock, name, context: server_names.append(name)  # type: ignore[assignment,func-returns-value]
    client_tls = ssl.create_default_context(cafile=str(cert))
    receiver = WebhookReceiver(tls=server_tls).start()
    transport = _transport(resolve=lambda host, port: ["127.0.0.1"], tls_context=client_tls)
    try:
        good = transport.send(f"https://hooks.example.test:{receiver.port}/in", {}, b"{}")
        wrong_name = transport.send(f"https://other.example.test:{receiver.port}/in", {}, b"{}")
    finally:
        transport.close()
        receiver.stop()
    assert good.succeeded, good
    assert receiver.requests[0].headers["host"] == f"hooks.example.test:{receiver.port}"
    assert server_names[0] == "hooks.example.test"
    # Connected to the same IP, but the certificate does not name that host: refused.
    assert wrong_name.status is None
    assert wrong_name.error is not None
    assert "hostname 'other.example.test' doesn't match" in wrong_name.error
    assert len(receiver.requests) == 1
