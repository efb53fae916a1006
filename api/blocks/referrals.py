"""23blocks Referrals API: a user's code, tracking, completion, a user's referrals and the
program's configuration, over the native referral program, codes, writes and reads.

The configuration's min-qualifying-amount and expiration-days are the native program's
(a completion under the minimum, or without an amount while one is set, is refused
referral_not_qualified, or leaves the referral pending when the completion action brings
it; a referral tracked while expiration-days is set expires that many days later: status
expired, completion refused referral_expired), and tracking keeps referee-email for the
listing. What the engine has no rule for is answered as not applied rather than
pretended: the configuration's answer shows the points each side is paid, and a referee
reward other than points (the document's percentage_discount) pays nothing, so
referee-reward answers points 0.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from flask import Blueprint, Response
from pydantic import Field, StrictInt
from sqlalchemy.orm import Session

from api.audit import audit_change
from api.auth import current_principal
from api.blocks.jsonapi import (
    PREFIX,
    Attributes,
    Document,
    Kebab,
    Many,
    PageQuery,
    Single,
    native_model,
    one,
    page_count,
    resource,
)
from api.blocks.writes import (
    WRITE_ERRORS,
    WRITE_HEADERS,
    AcceptedDocument,
    dialect_write,
    translates,
)
from api.endpoint import Access, endpoint
from api.points.schemas import ParticipantId
from api.referrals.schemas import (
    EXPIRATION_DAYS_DOC,
    MIN_QUALIFYING_AMOUNT_DOC,
    ActionName,
    CompleteRequest,
    ReferralPoints,
    ReferralProgramPut,
    TrackRequest,
)
from api.referrals.views import COMPLETION_REFUSALS, TRACK_REFUSALS, number
from api.runtime import runtime
from api.validation import check_participant_id
from app.errors import parse_uuid
from app.referrals.codes import referral_code, referral_code_made_at
from app.referrals.decisions import referral_not_found
from app.referrals.kinds import REFERRAL_COMPLETE_KIND, REFERRAL_TRACK_KIND
from app.referrals.program import put_referral_program
from app.referrals.reads import participant_referrals

bp = Blueprint("blocks_referrals", __name__, url_prefix=PREFIX)

TAG = "23blocks: referrals"


class CodeAttributes(Kebab):
    user_id: str
    code: str
    share_url: str | None = Field(description="null: the engine keeps no invitation link")
    total_referrals: int
    successful_referrals: int
    pending_referrals: int
    total_rewards_earned: int = Field(description="Points the user was paid as referrer")
    created_at: datetime | None


def _totals(user_id: str, session: Session) -> dict[str, int]:
    principal = current_principal()
    listed = participant_referrals(
        session, principal.tenant_id, principal.env, user_id, status=None, offset=0, limit=0
    )
    return listed["totals"]  # type: ignore[no-any-return]


@endpoint(
    bp,
    "GET",
    "/referrals/code/<user_id>",
    summary="A user's referral code (made on the first ask) with the user's totals",
    tag=TAG,
    access=Access.PARTICIPANT,
    responses={200: Single[Literal["referral-code"], CodeAttributes]},
)
def blocks_get_referral_code(user_id: str) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        code = referral_code(session, principal.tenant_id, principal.env, user_id)
        made_at = referral_code_made_at(session, principal.tenant_id, principal.env, user_id)
        totals = _totals(user_id, session)
    attributes = CodeAttributes(
        user_id=user_id,
        code=code,
        share_url=None,
        total_referrals=totals["total"],
        successful_referrals=totals["completed"],
        pending_referrals=totals["pending"],
        total_rewards_earned=totals["points_earned"],
        created_at=made_at,
    )
    return one("referral-code", code, attributes), 200


class SideReward(Kebab):
    type: Literal["points"]
    amount: int
    value: int = Field(description="Same as amount")
    status: Literal["paid", "pending"]


Status = Literal["pending", "completed", "expired"]


class ReferralAttributes(Kebab):
    referrer_id: str
    referee_id: str
    referral_code: str
    status: Status
    referrer_reward: SideReward
    referee_reward: SideReward
    qualifying_action: str | None
    qualifying_amount: float | None
    order_id: str | None
    created_at: datetime
    completed_at: datetime | None


ReferralResource = Single[Literal["referral"], ReferralAttributes]


def _side(points: int, status: str) -> SideReward:
    return SideReward(
        type="points",
        amount=points,
        value=points,
        status="paid" if status == "completed" else "pending",
    )


@translates(REFERRAL_TRACK_KIND)
@translates(REFERRAL_COMPLETE_KIND)
def _referral_document(result: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    attributes = ReferralAttributes(
        referrer_id=result["referrer_id"],
        referee_id=result["referee_id"],
        referral_code=result["referral_code"],
        status=result["status"],
        referrer_reward=_side(result["referrer_points"], result["status"]),
        referee_reward=_side(result["referee_points"], result["status"]),
        qualifying_action=result["qualifying_action"],
        qualifying_amount=result["qualifying_amount"],
        order_id=result["order_id"],
        created_at=result["created_at"],
        completed_at=result["completed_at"],
    )
    return one("referral", result["referral_id"], attributes)


class TrackAttributes(Attributes):
    referral_code: str = Field(min_length=1, max_length=64)
    referee_id: ParticipantId
    referee_email: str | None = Field(
        default=None, description="Kept and shown in the referrer's list (name@domain)"
    )


TrackDocument = Document[Literal["referral-tracking"], TrackAttributes]


@endpoint(
    bp,
    "POST",
    "/referrals/track",
    summary="Track a referral: a new user signed up with a referral code (201, pending)",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=TrackDocument,
    responses={201: ReferralResource, 202: AcceptedDocument},
    errors={**WRITE_ERRORS, 400: (*WRITE_ERRORS[400], *TRACK_REFUSALS)},
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_track_referral(body: TrackDocument) -> Response:
    attributes = body.attributes
    native = native_model(
        TrackRequest,
        {},
        referral_code=attributes.referral_code,
        referee_id=attributes.referee_id,
        referee_email=attributes.referee_email,
    )
    return dialect_write(REFERRAL_TRACK_KIND, native.payload())


class CompletionAttributes(Attributes):
    referral_id: str = Field(min_length=1, max_length=64)
    qualifying_action: ActionName | None = None
    qualifying_amount: Decimal | None = None
    order_id: str | None = Field(default=None, min_length=1, max_length=255)


CompletionDocument = Document[Literal["referral-completion"], CompletionAttributes]


@endpoint(
    bp,
    "POST",
    "/referrals/complete",
    summary="Complete a referral by its id: both sides are paid once (200 with the referral), "
    "unless it expired or its amount falls short of the program's minimum",
    tag=TAG,
    access=Access.PARTICIPANT,
    body=CompletionDocument,
    responses={200: ReferralResource, 202: AcceptedDocument},
    errors={
        **WRITE_ERRORS,
        400: (*WRITE_ERRORS[400], *COMPLETION_REFUSALS),
        404: ("referral_not_found",),
        409: ("referral_already_completed",),
    },
    headers=WRITE_HEADERS,
    write=True,
)
def blocks_complete_referral(body: CompletionDocument) -> Response:
    attributes = body.attributes
    amount = attributes.qualifying_amount
    native = native_model(
        CompleteRequest,
        {},
        referral_id=attributes.referral_id,
        qualifying_action=attributes.qualifying_action,
        qualifying_amount=float(amount) if amount is not None else None,
        order_id=attributes.order_id,
    )
    referral_id = str(parse_uuid(attributes.referral_id, referral_not_found()))
    payload = {"referral_id": referral_id, **native.qualifying()}
    return dialect_write(REFERRAL_COMPLETE_KIND, payload, success_status=200)


class ReferralsQuery(PageQuery):
    filter_status: Status | None = Field(
        default=None,
        alias="filter[status]",
        description="expired: still pending when the program's expiration-days ran out",
    )


class ListedReferral(Kebab):
    referee_id: str
    referee_email: str | None = Field(description="null when tracking did not give one")
    referral_code: str
    status: Status
    reward_amount: int = Field(description="Points the referrer was paid")
    created_at: datetime
    completed_at: datetime | None


class ReferralsMeta(Kebab):
    total_referrals: int
    successful: int
    pending: int
    expired: int
    total_rewards: int
    page_count: int


@endpoint(
    bp,
    "GET",
    "/referrals/user/<user_id>",
    summary="The referrals a user made, newest first, with the user's totals",
    tag=TAG,
    access=Access.PARTICIPANT,
    query=ReferralsQuery,
    responses={200: Many[Literal["referral"], ListedReferral, ReferralsMeta]},
)
def blocks_list_user_referrals(user_id: str, query: ReferralsQuery) -> tuple[dict[str, Any], int]:
    check_participant_id(user_id)
    principal = current_principal()
    with runtime().session_factory() as session:
        listed = participant_referrals(
            session,
            principal.tenant_id,
            principal.env,
            user_id,
            status=query.filter_status,
            offset=query.offset,
            limit=query.page_size,
        )
    data = [
        resource(
            "referral",
            referral["referral_id"],
            ListedReferral(
                referee_id=referral["referee_id"],
                referee_email=referral["referee_email"],
                referral_code=referral["referral_code"],
                status=referral["status"],
                reward_amount=referral["referrer_points"],
                created_at=referral["created_at"],
                completed_at=referral["completed_at"],
            ),
        )
        for referral in listed["referrals"]
    ]
    totals = listed["totals"]
    matching = totals[query.filter_status or "total"]
    meta = ReferralsMeta(
        total_referrals=totals["total"],
        successful=totals["completed"],
        pending=totals["pending"],
        expired=totals["expired"],
        total_rewards=totals["points_earned"],
        page_count=page_count(matching, query.page_size),
    )
    return {"data": data, "meta": meta}, 200


class ReferrerReward(Attributes):
    type: Literal["points"]
    amount: ReferralPoints


class RefereeReward(Attributes):
    type: str = Field(
        min_length=1,
        max_length=64,
        description="points is paid; any other (a discount) is accepted but pays nothing",
    )
    amount: ReferralPoints | None = None
    value: Decimal | None = None
    max_discount: Decimal | None = None


class ConfigAttributes(Attributes):
    referrer_reward: ReferrerReward
    referee_reward: RefereeReward | None = None
    qualifying_action: ActionName | None = Field(
        default=None, description="The action that completes a referee's pending referral"
    )
    min_qualifying_amount: Decimal | None = Field(
        default=None, description=MIN_QUALIFYING_AMOUNT_DOC
    )
    expiration_days: StrictInt | None = Field(default=None, description=EXPIRATION_DAYS_DOC)
    max_referrals_per_user: StrictInt | None = None
    double_sided: bool = True
    active: bool = True


ConfigDocument = Document[Literal["referral-config"], ConfigAttributes]
CONFIG_ATTRIBUTES = {
    "referrer_points": "referrer-reward",
    "referee_points": "referee-reward",
    "completion_action": "qualifying-action",
    "max_referrals_per_referrer": "max-referrals-per-user",
    "min_qualifying_amount": "min-qualifying-amount",
    "expiration_days": "expiration-days",
}


class PaidReward(Kebab):
    type: Literal["points"]
    amount: int


class ConfigOut(Kebab):
    referrer_reward: PaidReward
    referee_reward: PaidReward
    qualifying_action: str | None
    min_qualifying_amount: float | None
    expiration_days: int | None
    max_referrals_per_user: int | None
    double_sided: bool
    active: bool
    updated_at: datetime | None


@endpoint(
    bp,
    "POST",
    "/referrals/config",
    summary="Configure the referral program (the whole of it); answers what the engine applies",
    tag=TAG,
    access=Access.ADMIN,
    body=ConfigDocument,
    responses={200: Single[Literal["referral-config"], ConfigOut]},
    errors={422: ("validation_error",)},
)
def blocks_configure_referrals(body: ConfigDocument) -> tuple[dict[str, Any], int]:
    attributes = body.attributes
    referee = attributes.referee_reward
    referee_points = (
        referee.amount or 0
        if attributes.double_sided and referee is not None and referee.type == "points"
        else 0
    )
    program = native_model(
        ReferralProgramPut,
        CONFIG_ATTRIBUTES,
        referrer_points=attributes.referrer_reward.amount,
        referee_points=referee_points,
        completion_action=attributes.qualifying_action,
        max_referrals_per_referrer=attributes.max_referrals_per_user,
        min_qualifying_amount=number(attributes.min_qualifying_amount),
        expiration_days=attributes.expiration_days,
        active=attributes.active,
    )
    principal = current_principal()
    with runtime().session_factory.begin() as session:
        stored = put_referral_program(session, principal.tenant_id, principal.env, program.terms())
        audit_change(
            session,
            "referral_program.updated",
            principal.tenant_id,
            {"values": program.model_dump(mode="json", exclude={"idempotency_key"})},
        )
    terms = program.terms()
    answer = ConfigOut(
        referrer_reward=PaidReward(type="points", amount=terms.referrer_points),
        referee_reward=PaidReward(type="points", amount=terms.referee_points),
        qualifying_action=terms.completion_action,
        min_qualifying_amount=(
            float(terms.min_qualifying_amount) if terms.min_qualifying_amount is not None else None
        ),
        expiration_days=terms.expiration_days,
        max_referrals_per_user=terms.max_referrals_per_referrer,
        double_sided=terms.referee_points > 0,
        active=terms.active,
        updated_at=stored.updated_at,
    )
    return one("referral-config", "referral-config", answer), 200
