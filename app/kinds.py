"""Every operation kind the service runs, registered from this one list: the web imports
it to record writes, the workers to execute them."""

from app.coupons.generation import COUPON_GENERATE
from app.coupons.redemption_batches import COUPON_REDEEM, COUPON_VOID
from app.engagement.kinds import (
    ACTION,
    ACTION_BATCH,
    ACTION_BULK,
    BADGE_AWARD,
    CHALLENGE_JOIN,
    STREAK_RECORD,
)
from app.operation_kinds import OperationKind, register_kind
from app.points.kinds import AWARD, AWARD_BATCH, AWARD_BULK, DEDUCT
from app.referrals.kinds import REFERRAL_COMPLETE, REFERRAL_TRACK
from app.rewards.claim_batches import CLAIM, CLAIM_CANCEL, CLAIM_USE

KINDS: tuple[OperationKind, ...] = (
    AWARD,
    DEDUCT,
    AWARD_BATCH,
    AWARD_BULK,
    CLAIM,
    CLAIM_USE,
    CLAIM_CANCEL,
    ACTION,
    ACTION_BATCH,
    ACTION_BULK,
    BADGE_AWARD,
    STREAK_RECORD,
    CHALLENGE_JOIN,
    REFERRAL_TRACK,
    REFERRAL_COMPLETE,
    COUPON_REDEEM,
    COUPON_VOID,
    COUPON_GENERATE,
)

for kind in KINDS:
    register_kind(kind)
