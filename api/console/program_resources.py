"""The program's resources as the console shows them: one declaration each.

A declaration says which API request models make its forms, which of the API's own views
list, load, create, change and remove it (so validation, rules and audit entries are the
API's: the views are called as plain functions, with the signed-in key as the principal),
and how a list row looks. api/console/program.py renders every one with the same pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from api.coupons.admin import (
    create_coupon_definition,
    deactivate_coupon_definition,
    get_coupon_definition,
    list_coupon_definitions,
    update_coupon_definition,
)
from api.coupons.schemas import CouponCreate, CouponList, CouponsQuery, CouponUpdate
from api.endpoint import ViewResult
from api.engagement.admin import (
    deactivate_one_badge,
    get_badges,
    get_earning_rule,
    get_earning_rules,
    get_one_badge,
    patch_badge,
    patch_earning_rule,
    post_badge,
    post_earning_rule,
    remove_earning_rule,
)
from api.engagement.program_admin import (
    get_challenge_definitions,
    get_leaderboards,
    get_one_challenge,
    get_one_leaderboard,
    get_one_streak,
    get_streaks,
    patch_challenge,
    patch_leaderboard,
    patch_streak,
    post_challenge,
    post_leaderboard,
    post_streak,
    remove_challenge,
    remove_leaderboard,
    remove_streak,
)
from api.engagement.program_schemas import (
    ChallengeCreate,
    ChallengeUpdate,
    DefinitionsQuery,
    LeaderboardCreate,
    LeaderboardUpdate,
    StreakCreate,
    StreakUpdate,
)
from api.engagement.schemas import (
    BadgeCreate,
    BadgesQuery,
    BadgeUpdate,
    EarningRuleCreate,
    EarningRulesQuery,
    EarningRuleUpdate,
)
from api.points.program import get_program, patch_program
from api.points.schemas import ProgramUpdate, TierCreate, TierUpdate
from api.points.tiers import get_one_tier, get_tiers, patch_tier, post_tier, remove_tier
from api.referrals.schemas import ReferralProgramPut
from api.referrals.views import get_referral_program, put_program

# Coupons are the one list the API pages; the others are short lists it gives whole.
COUPONS_PER_PAGE = 50


def answered(result: ViewResult) -> Any:
    """The model an API view answered with (its status is the API's business)."""
    if isinstance(result, tuple):
        return result[0]
    raise TypeError("the view answered with a bare response, not a model")


Listing = tuple[list[Any], int | None]  # the page's items, and how many in all when paged


@dataclass(frozen=True)
class Column:
    label: str
    field: str  # the API view's field shown in it
    numeric: bool = False


@dataclass(frozen=True)
class ProgramResource:
    """How the console shows and changes one kind of program definition.

    A resource without `list_page` is a singleton (program settings, referral program):
    its section is its edit form."""

    name: str  # the URL segment
    title: str
    noun: str
    summary: str
    load: Callable[[str], ViewResult]  # the API's GET view (singletons: given "")
    update_model: type[BaseModel]
    update: Callable[..., ViewResult]  # the API's PATCH (or PUT) view: (key, body=) or (body=)
    key_field: str = ""  # the view field naming an item in its URL
    title_field: str = "name"
    list_page: Callable[[int], Listing] | None = None
    columns: tuple[Column, ...] = ()
    create_model: type[BaseModel] | None = None
    create: Callable[..., ViewResult] | None = None
    remove: Callable[[str], ViewResult] | None = None
    # "delete" (the item is gone) or "deactivate" (shown with `active_field` false).
    removal: str = ""
    active_field: str = "active"
    # A PUT: every field is sent on each save, not only the changed ones.
    whole_update: bool = False
    # Domain error codes that concern one field (shown beside it, not atop the form).
    code_fields: Mapping[str, str] = field(default_factory=dict)
    # Fields shown first, in this order (the rest follow in the model's order).
    first_fields: tuple[str, ...] = ()
    # Example values of JSON fields, shown with their hints.
    examples: Mapping[str, str] = field(default_factory=dict)

    @property
    def singleton(self) -> bool:
        return self.list_page is None


def _whole(listed: list[Any]) -> Listing:
    return listed, None


def _coupon_page(page: int) -> Listing:
    coupons: CouponList = answered(
        list_coupon_definitions(query=CouponsQuery(page=page, page_size=COUPONS_PER_PAGE))
    )
    return list(coupons.coupons), coupons.total


def _key_update(view: Callable[..., ViewResult]) -> Callable[..., ViewResult]:
    return lambda key, body: view(key, body=body)


def _singleton_update(view: Callable[..., ViewResult]) -> Callable[..., ViewResult]:
    return lambda _key, body: view(body=body)


RESOURCES: tuple[ProgramResource, ...] = (
    ProgramResource(
        name="tiers",
        title="Tiers",
        noun="tier",
        summary="Loyalty levels by lifetime (or rolling) points, with their multipliers.",
        key_field="code",
        list_page=lambda _page: _whole(answered(get_tiers()).tiers),
        columns=(
            Column("Code", "code"),
            Column("Name", "name"),
            Column("Level", "level", numeric=True),
            Column("Points required", "points_required", numeric=True),
            Column("Multiplier", "points_multiplier", numeric=True),
            Column("Active", "is_active"),
        ),
        load=get_one_tier,
        create_model=TierCreate,
        create=post_tier,
        update_model=TierUpdate,
        update=_key_update(patch_tier),
        remove=remove_tier,
        removal="delete",
        active_field="is_active",
        code_fields={"tier_already_exists": "code", "tier_level_taken": "level"},
        examples={"benefits": '["Free shipping", "Birthday gift"]'},
    ),
    ProgramResource(
        name="settings",
        title="Program settings",
        noun="program settings",
        summary="Points expiry, the expiring-soon window, tier qualification, holidays.",
        load=lambda _key: get_program(),
        update_model=ProgramUpdate,
        update=_singleton_update(patch_program),
        examples={
            "tier_qualification": '{"basis": "rolling", "window_days": 365}',
            "holidays": '["2025-12-25", "2026-01-01"]',
        },
    ),
    ProgramResource(
        name="earning-rules",
        title="Earning rules",
        noun="earning rule",
        summary="Points for actions: a formula, conditions, multipliers, caps and a window.",
        key_field="rule_id",
        list_page=lambda _page: _whole(
            answered(get_earning_rules(query=EarningRulesQuery())).earning_rules
        ),
        columns=(
            Column("Name", "name"),
            Column("Action", "action"),
            Column("Formula", "formula"),
            Column("Active", "active"),
            Column("Starts (UTC)", "starts_at"),
            Column("Ends (UTC)", "ends_at"),
        ),
        load=get_earning_rule,
        create_model=EarningRuleCreate,
        create=post_earning_rule,
        update_model=EarningRuleUpdate,
        update=_key_update(patch_earning_rule),
        remove=remove_earning_rule,
        removal="delete",
        examples={
            "conditions": '{"min_amount": 10, "equals": {"channel": "web"}}',
            "multipliers": '{"weekend": 2, "dates": [{"from": "2025-11-28", "to": "2025-11-30", '
            '"factor": 3}]}',
            "caps": '{"per_day": 500, "total": 10000}',
        },
    ),
    ProgramResource(
        name="badges",
        title="Badges",
        noun="badge",
        summary="Earned by a count of actions, points, a streak, a challenge, or by hand.",
        key_field="badge_id",
        list_page=lambda _page: _whole(answered(get_badges(query=BadgesQuery())).badges),
        columns=(
            Column("Name", "name"),
            Column("Category", "category"),
            Column("Criteria", "criteria"),
            Column("Points", "points_reward", numeric=True),
            Column("Active", "active"),
        ),
        load=get_one_badge,
        create_model=BadgeCreate,
        create=post_badge,
        update_model=BadgeUpdate,
        update=_key_update(patch_badge),
        remove=deactivate_one_badge,
        removal="deactivate",
        examples={"criteria": '{"type": "action_count", "action": "purchase", "count": 5}'},
    ),
    ProgramResource(
        name="streaks",
        title="Streaks",
        noun="streak",
        summary="Runs of daily or weekly actions, with milestone points.",
        key_field="streak_type",
        list_page=lambda _page: _whole(answered(get_streaks(query=DefinitionsQuery())).streaks),
        columns=(
            Column("Streak type", "streak_type"),
            Column("Name", "name"),
            Column("Action", "action"),
            Column("Period", "period"),
            Column("Grace (hours)", "grace_period_hours", numeric=True),
            Column("Active", "active"),
        ),
        load=get_one_streak,
        create_model=StreakCreate,
        create=post_streak,
        update_model=StreakUpdate,
        update=_key_update(patch_streak),
        remove=remove_streak,
        removal="deactivate",
        code_fields={"streak_already_exists": "streak_type"},
        examples={"milestones": '[{"days": 7, "points": 50}, {"days": 30, "points": 300}]'},
    ),
    ProgramResource(
        name="challenges",
        title="Challenges",
        noun="challenge",
        summary="A target of actions or points earned in a window, with a reward.",
        key_field="challenge_id",
        list_page=lambda _page: _whole(
            answered(get_challenge_definitions(query=DefinitionsQuery())).challenges
        ),
        columns=(
            Column("Name", "name"),
            Column("Type", "type"),
            Column("Action", "action"),
            Column("Target", "target", numeric=True),
            Column("Participants", "participants_count", numeric=True),
            Column("Completions", "completions_count", numeric=True),
            Column("Active", "active"),
        ),
        load=get_one_challenge,
        create_model=ChallengeCreate,
        create=post_challenge,
        update_model=ChallengeUpdate,
        update=_key_update(patch_challenge),
        remove=remove_challenge,
        removal="deactivate",
        examples={"reward": '{"type": "points", "amount": 100}'},
    ),
    ProgramResource(
        name="leaderboards",
        title="Leaderboards",
        noun="leaderboard",
        summary="Boards of points earned, actions or referrals, per period.",
        key_field="leaderboard_id",
        list_page=lambda _page: _whole(
            answered(get_leaderboards(query=DefinitionsQuery())).leaderboards
        ),
        columns=(
            Column("Name", "name"),
            Column("Metric", "metric"),
            Column("Action", "action"),
            Column("Period", "period"),
            Column("Size", "size", numeric=True),
            Column("Active", "active"),
        ),
        load=get_one_leaderboard,
        create_model=LeaderboardCreate,
        create=post_leaderboard,
        update_model=LeaderboardUpdate,
        update=_key_update(patch_leaderboard),
        remove=remove_leaderboard,
        removal="deactivate",
    ),
    ProgramResource(
        name="coupons",
        title="Coupons",
        noun="coupon",
        summary="Discount codes: their terms, limits and window, and generated codes.",
        key_field="id",
        title_field="code",
        list_page=_coupon_page,
        columns=(
            Column("Code", "code"),
            Column("Campaign", "campaign"),
            Column("Discount", "discount_type"),
            Column("Value", "discount_value", numeric=True),
            Column("Used", "usage_count", numeric=True),
            Column("Active", "active"),
            Column("Expires (UTC)", "expires_at"),
        ),
        load=get_coupon_definition,
        create_model=CouponCreate,
        create=create_coupon_definition,
        update_model=CouponUpdate,
        update=_key_update(update_coupon_definition),
        remove=deactivate_coupon_definition,
        removal="deactivate",
        code_fields={"code_taken": "code"},
        first_fields=("code", "code_prefix", "campaign", "discount_type", "discount_value"),
        examples={
            "conditions": '{"new_customers_only": true}',
            "applicable_to": '["sku-1", "shoes"]',
            "metadata": '{"channel": "newsletter"}',
        },
    ),
    ProgramResource(
        name="referrals",
        title="Referral program",
        noun="referral program",
        summary="Points for referrer and referee, the completing action, limits and expiry.",
        load=lambda _key: get_referral_program(),
        update_model=ReferralProgramPut,
        update=_singleton_update(put_program),
        whole_update=True,
    ),
)

BY_NAME: dict[str, ProgramResource] = {resource.name: resource for resource in RESOURCES}
