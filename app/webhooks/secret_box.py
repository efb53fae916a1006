"""Webhook signing secrets at rest: sealed with SECRET_KEY (Fernet: AES-128-CBC and an
HMAC-SHA256, from the `cryptography` library) when one is set, so a copy of the database
(a backup, a replica, a leaked dump) does not let its holder sign webhooks.

SECRET_KEY (or the file SECRET_KEY_FILE names, one key per line) lists keys, newest
first: the first seals, any of them opens, which is how a key is rotated (README,
"Webhook secrets at rest"). A key is any string; a Fernet key is derived from it with HKDF.
Without a key secrets are stored as they are, and stored ones open as they are: a
deployment turns encryption on by setting the key and running `rewards secrets reseal`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.config import Settings

SEALED_PREFIX = "fernet:"
_HKDF_INFO = b"rewards-engine webhook signing secrets"


class SecretKeyError(Exception):
    """A sealed secret that no configured key opens (SECRET_KEY unset, or not the key it
    was sealed with)."""


def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([_fernet(key) for key in keys]) if keys else None
        # Opening costs a MAC and a decryption; the dispatcher opens the same few secrets
        # over and over.
        self._opened: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.secret_keys())

    @property
    def seals(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        """What to store for `secret`: sealed with the first key, or as it is without one."""
        if self._fernet is None:
            return secret
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(SEALED_PREFIX):
            return stored
        opened = self._opened.get(stored)
        if opened is not None:
            return opened
        if self._fernet is None:
            raise SecretKeyError("a webhook secret is sealed and SECRET_KEY is not set")
        try:
            opened = self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a webhook secret is sealed with a key SECRET_KEY does not list"
            ) from None
        self._opened[stored] = opened
        return opened

    def reseal(self, stored: str) -> str:
        """`stored` sealed with the first key (rotation, or turning encryption on)."""
        return self.seal(self.open(stored))
