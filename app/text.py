"""Text rules every stored string obeys, whichever door it came in by."""

from __future__ import annotations

import secrets


def holds_nul(document: object) -> bool:
    """Whether a string, or any key or string anywhere in a JSON document, holds U+0000.

    PostgreSQL text and jsonb cannot store U+0000, so such input is refused up front
    rather than failing half-way through a write.
    """
    if isinstance(document, str):
        return "\x00" in document
    if isinstance(document, dict):
        return any(holds_nul(key) or holds_nul(value) for key, value in document.items())
    if isinstance(document, list | tuple):
        return any(holds_nul(value) for value in document)
    return False


def unknown_fields_message(names: set[object]) -> str:
    """'unknown field(s): a, b' for a client's stray keys, storable even when a key holds NUL."""
    shown = sorted(str(name).replace("\x00", "\ufffd") for name in names)
    return f"unknown field(s): {', '.join(shown)}"


# Codes people read aloud and type by hand (referral codes, coupon codes, generated reward
# codes): uppercase letters and digits without the look-alikes 0 O 1 I L. 31 symbols: 10
# of them make about 2^49.5 codes.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def random_code(length: int, prefix: str = "") -> str:
    """`prefix` and `length` unguessable symbols of CODE_ALPHABET (from `secrets`)."""
    return prefix + "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
