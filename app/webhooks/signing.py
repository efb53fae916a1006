"""Standard Webhooks signatures (https://www.standardwebhooks.com).

The secret the engine makes is `whsec_` + base64 of random bytes; the HMAC key is those
bytes. A caller may give its own secret (16 to 200 printable ASCII characters, no blanks);
its key is, as the Standard Webhooks libraries read a string secret, the base64 after
`whsec_` decoded, when the rest is valid base64, and otherwise the secret's own bytes, the
whole of it (what those libraries take as a "raw" secret, and what a hand-written
HMAC-SHA256 over the secret uses). Either way the key has at least 16 bytes. The signed
content is `{webhook-id}.{webhook-timestamp}.{body}`, and the header carries one
`v1,<base64 HMAC-SHA256>` per active secret, space-separated, so a receiver holding either
the old or the new secret verifies during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"  # noqa: S105  (a format prefix, not a secret)
# 32 bytes: the spec asks for 24 to 64.
SECRET_BYTES = 32
CALLER_SECRET_MIN_CHARS, CALLER_SECRET_MAX_CHARS = 16, 200
KEY_MIN_BYTES = 16
CALLER_SECRET_RULE = (
    f"{CALLER_SECRET_MIN_CHARS} to {CALLER_SECRET_MAX_CHARS} printable ASCII characters, no "
    f"blanks; whsec_ followed by base64 must decode to at least {KEY_MIN_BYTES} bytes"
)
_PRINTABLE = re.compile(f"[!-~]{{{CALLER_SECRET_MIN_CHARS},{CALLER_SECRET_MAX_CHARS}}}")
# Standard base64, padded or not (the libraries pad what they are given before decoding).
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?")


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key_of(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    if encoded != secret and _BASE64.fullmatch(encoded):
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    return secret.encode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the decoded base64 of a `whsec_<base64>` secret, the
    secret's own bytes otherwise (module docstring). A stored secret too short to be one
    the engine accepts is corrupt: ValueError, rather than signing with a weak key."""
    key = _key_of(secret)
    if len(key) < KEY_MIN_BYTES:
        raise ValueError(f"a webhook signing key must have at least {KEY_MIN_BYTES} bytes")
    return key


def caller_secret_problem(secret: str) -> str | None:
    """What is wrong with a secret a caller gives (CALLER_SECRET_RULE); None: fine."""
    if not _PRINTABLE.fullmatch(secret):
        return (
            f"must be {CALLER_SECRET_MIN_CHARS} to {CALLER_SECRET_MAX_CHARS} printable ASCII "
            "characters without blanks"
        )
    if len(_key_of(secret)) < KEY_MIN_BYTES:
        # Standard Webhooks libraries would verify with the decoded bytes: too short a key.
        return f"whsec_ followed by base64 must decode to at least {KEY_MIN_BYTES} bytes"
    return None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed_content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed_content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    active_secrets: Iterable[str], message_id: str, timestamp: int, body: bytes
) -> str:
    return " ".join(sign(secret, message_id, timestamp, body) for secret in active_secrets)
