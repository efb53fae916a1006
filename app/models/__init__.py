"""All mapped tables; importing this package registers them on `Base.metadata`."""

from app.models.audit import AuditEntry
from app.models.console import ConsoleSession
from app.models.coupons import Coupon, CouponCode, CouponRedemption
from app.models.engagement import (
    Action,
    Badge,
    BadgeProgress,
    BulkActionRow,
    Challenge,
    ChallengeProgress,
    EarningRule,
    EarningRuleUsage,
    Leaderboard,
    LeaderboardScore,
    ParticipantBadge,
    ParticipantStreak,
    Streak,
)
from app.models.operations import Operation, OperationStatus
from app.models.outbox import OutboxEvent
from app.models.points import (
    LedgerEntry,
    Participant,
    ParticipantMultiplier,
    PointLot,
    ProgramSettings,
    Tier,
)
from app.models.referrals import Referral, ReferralCode, ReferralProgram
from app.models.rewards import Claim, Reward, RewardCode
from app.models.tenancy import ApiKey, Environment, Tenant
from app.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Action",
    "ApiKey",
    "AuditEntry",
    "Badge",
    "BadgeProgress",
    "BulkActionRow",
    "Challenge",
    "ChallengeProgress",
    "Claim",
    "ConsoleSession",
    "Coupon",
    "CouponCode",
    "CouponRedemption",
    "EarningRule",
    "EarningRuleUsage",
    "Environment",
    "Leaderboard",
    "LeaderboardScore",
    "LedgerEntry",
    "Operation",
    "OperationStatus",
    "OutboxEvent",
    "Participant",
    "ParticipantBadge",
    "ParticipantMultiplier",
    "ParticipantStreak",
    "PointLot",
    "ProgramSettings",
    "Referral",
    "ReferralCode",
    "ReferralProgram",
    "Reward",
    "RewardCode",
    "Streak",
    "Tenant",
    "Tier",
    "WebhookDelivery",
    "WebhookEndpoint",
]
