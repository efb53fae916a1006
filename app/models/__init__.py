"""All mapped tables; importing this package registers them on `Base.metadata`."""

from app.models.audit import AuditEntry
from app.models.engagement import (
    Action,
    Badge,
    BadgeProgress,
    EarningRule,
    EarningRuleUsage,
    ParticipantBadge,
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
from app.models.rewards import Claim, Reward, RewardCode
from app.models.tenancy import ApiKey, Environment, Tenant
from app.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Action",
    "ApiKey",
    "AuditEntry",
    "Badge",
    "BadgeProgress",
    "Claim",
    "EarningRule",
    "EarningRuleUsage",
    "Environment",
    "LedgerEntry",
    "Operation",
    "OperationStatus",
    "OutboxEvent",
    "Participant",
    "ParticipantBadge",
    "ParticipantMultiplier",
    "PointLot",
    "ProgramSettings",
    "Reward",
    "RewardCode",
    "Tenant",
    "Tier",
    "WebhookDelivery",
    "WebhookEndpoint",
]
