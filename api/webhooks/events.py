"""What each webhook event's `data` holds: the `webhooks` section of the OpenAPI document.

The payloads are built where the changes are made (app/); these models describe them, and
the delivery tests validate what receivers actually get against them (extra fields are
refused), so the document cannot drift from the wire. An event that carries an answer of
the API (a claim, a redemption, a referral) is that answer's model plus its own fields.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from api.coupons.schemas import Redemption
from api.referrals.schemas import ReferralView
from api.rewards.schemas import ClaimResponse


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RewardClaimed(ClaimResponse):
    """The claim's answer, with the reward and when and where it was claimed."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["fulfilled"]  # a claim is fulfilled when made; use and cancel come later
    reward_id: str
    claimed_at: datetime
    environment: Literal["live", "test"]


class PointsAwarded(EventData):
    participant_id: str
    transaction_id: str
    amount: int
    base_amount: int  # before the tier's and active multipliers
    new_balance: int
    reason: str | None
    metadata: dict[str, Any] | None


class PointsDeducted(EventData):
    participant_id: str
    transaction_id: str
    amount: int
    new_balance: int
    reason: str | None
    metadata: dict[str, Any] | None


class PointsExpired(EventData):
    participant_id: str
    transaction_id: str
    amount: int
    new_balance: int
    expired_at: datetime


class PointsReleased(EventData):
    participant_id: str
    transaction_id: str
    amount: int
    new_balance: int
    released_at: datetime


class TierRef(EventData):
    code: str
    level: int
    name: str | None = None


class TierChanged(EventData):
    """tier.upgraded and tier.downgraded. `manual` and `reason` come with changes made by
    hand or by the rolling qualification; `transaction_id` with those an award caused."""

    participant_id: str
    previous_tier: TierRef | None
    new_tier: TierRef | None
    qualifying_points: int
    transaction_id: str | None = None
    manual: bool = False
    reason: str | None = None


class BadgeAwarded(EventData):
    participant_id: str
    badge_id: str
    name: str
    source: Literal["criteria", "manual"]
    points_reward: int | None
    transaction_id: str | None
    awarded_at: datetime


class StreakMilestone(EventData):
    participant_id: str
    streak_type: str
    days: int
    points: int
    transaction_id: str


class StreakBroken(EventData):
    participant_id: str
    streak_type: str
    count: int  # the run's length when it broke
    run: int  # which run of the participant's it was, from 1


class ChallengeReward(EventData):
    type: str
    reward_id: str | None = None
    amount: int | None = None


class ChallengeCompleted(EventData):
    participant_id: str
    challenge_id: str
    name: str
    points: int | None
    reward: ChallengeReward | None
    transaction_id: str | None
    completed_at: datetime


class LeaderboardRankChanged(EventData):
    leaderboard_id: str
    period_start: date
    participant_id: str
    change: Literal["entered", "left"]
    rank: int | None
    previous_rank: int | None
    score: int
    top: int


class ReferralEvent(ReferralView):
    """referral.tracked (status pending, no points yet) and referral.completed: the
    referral as the API shows it."""

    model_config = ConfigDict(extra="forbid")


class CouponRedeemed(Redemption):
    """The redemption's answer, with the coupon's campaign and the environment."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["redeemed"]
    voided_at: None
    campaign: str | None
    environment: Literal["live", "test"]


class CouponExpired(EventData):
    coupon_id: str
    code: str
    campaign: str | None
    expires_at: datetime
    usage_count: int
    usage_limit: int | None
    environment: Literal["live", "test"]


class WebhookTest(EventData):
    endpoint_id: str
    message: str


EVENT_DATA: dict[str, type[BaseModel]] = {
    "reward.reward_claimed": RewardClaimed,
    "reward.redeemed": RewardClaimed,  # the same events, to endpoints subscribed by this name
    "points.awarded": PointsAwarded,
    "points.deducted": PointsDeducted,
    "points.expired": PointsExpired,
    "points.released": PointsReleased,
    "tier.upgraded": TierChanged,
    "tier.downgraded": TierChanged,
    "badge.awarded": BadgeAwarded,
    "streak.milestone": StreakMilestone,
    "streak.broken": StreakBroken,
    "challenge.completed": ChallengeCompleted,
    "leaderboard.rank_changed": LeaderboardRankChanged,
    "referral.tracked": ReferralEvent,
    "referral.completed": ReferralEvent,
    "coupon.redeemed": CouponRedeemed,
    "coupon.expired": CouponExpired,
    "webhook.test": WebhookTest,
}
