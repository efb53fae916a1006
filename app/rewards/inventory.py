"""Pre-loaded code inventory: uploads, set-wise and duplicate-safe."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.errors import DomainError
from app.rewards.catalog import CODELESS_TYPES, available_codes, get_reward

MAX_CODES_PER_UPLOAD = 100_000
MAX_CODE_LENGTH = 255

# One statement for the whole upload. unnest ... WITH ORDINALITY keeps upload order, which
# becomes identity order, which is allocation order (oldest first). ON CONFLICT DO NOTHING
# skips codes already stocked and repeats within the same upload.
_INSERT_CODES = text(
    """
    WITH inserted AS (
        INSERT INTO reward_codes (reward_id, code)
        SELECT :reward_id, upload.code
        FROM unnest(CAST(:codes AS text[])) WITH ORDINALITY AS upload(code, position)
        ORDER BY upload.position
        ON CONFLICT (reward_id, code) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
    """
)


@dataclass(frozen=True)
class UploadResult:
    added: int
    duplicates: int
    available_codes: int | None


def validate_codes(codes: list[str]) -> list[str]:
    """Strip codes, drop blank ones, and reject an upload that breaks the limits."""
    cleaned = [code.strip() for code in codes]
    cleaned = [code for code in cleaned if code]
    if not cleaned:
        raise DomainError("validation_error", "The upload contains no codes", 422)
    if len(cleaned) > MAX_CODES_PER_UPLOAD:
        raise DomainError(
            "validation_error", f"At most {MAX_CODES_PER_UPLOAD} codes per upload", 422
        )
    for position, code in enumerate(cleaned, start=1):
        if len(code) > MAX_CODE_LENGTH or not code.isprintable():
            raise DomainError(
                "validation_error",
                f"Code #{position} must be 1 to {MAX_CODE_LENGTH} printable characters",
                422,
            )
    return cleaned


def upload_codes(
    session: Session, tenant_id: uuid.UUID, env: str, reward_id: uuid.UUID, codes: list[str]
) -> UploadResult:
    cleaned = validate_codes(codes)
    # The reward lock orders the upload against concurrent claims and uploads, so the
    # codes_loaded counter stays exact.
    reward = get_reward(session, tenant_id, env, reward_id, lock=True)
    if reward.type in CODELESS_TYPES:
        raise DomainError("codes_not_supported", f"{reward.type} rewards do not use codes", 400)
    added = int(
        session.execute(_INSERT_CODES, {"reward_id": reward.id, "codes": cleaned}).scalar_one()
    )
    reward.codes_loaded += added
    session.flush()
    return UploadResult(added, len(cleaned) - added, available_codes(reward))
