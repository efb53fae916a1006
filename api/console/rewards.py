"""Rewards in the console: list with filters, create, edit, deactivate, code upload, and
stock and claims over time. Writes call the API's own admin views (api/rewards/admin.py),
so validation, rules and audit entries are the API's."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast, get_args

from flask import Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from api.console import bp
from api.console.forms import FieldErrors, FormInvalid, FormReader, form_value, parse_console_query
from api.console.pages import accepts_upload, is_htmx, render_page, signed_in
from api.rewards.admin import (
    CODES_UPLOAD_LIMIT_BYTES,
    codes_from_text,
    create_reward_definition,
    deactivate_reward_definition,
    list_reward_definitions,
    store_codes,
    update_reward_definition,
)
from api.rewards.schemas import (
    AdminReward,
    AdminRewardList,
    AdminRewardsQuery,
    CreateRewardRequest,
    RewardType,
    UpdateRewardRequest,
)
from api.runtime import runtime
from app.clock import utcnow
from app.errors import DomainError
from app.rewards.catalog import admin_view, get_reward, parse_reward_id
from app.rewards.history import codes_added_by_day, stock_history
from app.rewards.inventory import MAX_CODES_PER_UPLOAD

REWARD_TYPES: tuple[str, ...] = get_args(RewardType)
# The config keys the engine reads get inputs of their own; any other key goes in the
# form's JSON field `config`.
ENGINE_CONFIG_KEYS = ("code_prefix", "generate_when_exhausted", "multiplier", "duration_days")
DOMAIN_ERROR_FIELDS = {"slug_taken": "slug"}


def _config(reader: FormReader) -> dict[str, Any] | None:
    config = reader.json_object("config") or {}
    prefix = reader.text("config_code_prefix")
    multiplier = reader.number("config_multiplier")
    duration = reader.integer("config_duration_days")
    for key, value in (
        ("code_prefix", prefix),
        ("multiplier", multiplier),
        ("duration_days", duration),
    ):
        if value is not None:
            config[key] = value
    if reader.checkbox("config_generate_when_exhausted"):
        config["generate_when_exhausted"] = True
    else:
        config.pop("generate_when_exhausted", None)
    return config or None


def _media(reader: FormReader) -> dict[str, Any] | None:
    media_type, url = reader.text("media_type"), reader.text("media")
    if media_type is None and url is None:
        return None
    return {"type": media_type, "value": url}


def _reward_values(reader: FormReader) -> dict[str, Any]:
    """The form as the API's reward fields (None: left empty)."""
    return {
        "name": reader.text("name"),
        "description": reader.text("description"),
        "points_cost": reader.integer("points_cost"),
        "max_claims_per_user": reader.integer("max_claims_per_user"),
        "total_inventory": reader.integer("total_inventory"),
        "is_active": reader.checkbox("is_active"),
        "available_from": reader.datetime_utc("available_from"),
        "expires_at": reader.datetime_utc("expires_at"),
        "code_expiry_days": reader.integer("code_expiry_days"),
        "category": reader.text("category"),
        "image_url": reader.text("image_url"),
        "slug": reader.text("slug"),
        "custom_attributes": reader.json_object("custom_attributes"),
        "media": _media(reader),
        "config": _config(reader),
    }


def _form_fields(reward: dict[str, Any]) -> dict[str, str]:
    """A stored reward (admin_view) as the form's control values."""
    config = dict(reward.get("config") or {})
    engine = {key: config.pop(key, None) for key in ENGINE_CONFIG_KEYS}
    media = reward.get("media") or {}
    fields = {
        name: form_value(reward.get(name))
        for name in (
            "name",
            "type",
            "description",
            "points_cost",
            "max_claims_per_user",
            "total_inventory",
            "available_from",
            "expires_at",
            "code_expiry_days",
            "category",
            "image_url",
            "slug",
            "custom_attributes",
        )
    }
    fields.update(
        is_active="on" if reward.get("is_active", True) else "",
        config=form_value(config or None),
        config_code_prefix=form_value(engine["code_prefix"]),
        config_multiplier=form_value(engine["multiplier"]),
        config_duration_days=form_value(engine["duration_days"]),
        config_generate_when_exhausted="on" if engine["generate_when_exhausted"] else "",
        media_type=form_value(media.get("type")),
        media=form_value(media.get("value")),
    )
    return fields


def _same(stored: Any, given: Any) -> bool:
    # The form shows times to the second: a stored time's microseconds are no change.
    if isinstance(stored, datetime) and isinstance(given, datetime):
        return stored.replace(microsecond=0) == given.replace(microsecond=0)
    return bool(stored == given)


@bp.get("/rewards")
def rewards() -> Response:
    query = parse_console_query(AdminRewardsQuery)
    listed, _ = cast(tuple[AdminRewardList, int], list_reward_definitions(query=query))
    filters = {
        "is_active": "" if query.is_active is None else form_value(query.is_active),
        "reward_type": query.reward_type or "",
    }
    return render_page(
        "console/rewards.html",
        title="Rewards",
        rewards=listed.items,
        total=listed.total,
        page=query.page,
        page_size=query.page_size,
        filters=filters,
        type_options=[(name, name) for name in REWARD_TYPES],
    )


def _reward_form_page(
    *,
    reward: dict[str, Any] | None,
    fields: dict[str, str],
    errors: FieldErrors | None,
    status: int,
) -> Response:
    context: dict[str, Any] = {}
    if reward is not None:
        principal = signed_in().principal
        today = utcnow().date()
        with runtime().session_factory() as session:
            stored = get_reward(
                session, principal.tenant_id, principal.env, parse_reward_id(reward["id"])
            )
            added = codes_added_by_day(
                session, principal.tenant_id, principal.env, stored.id, today
            )
            context["history"] = stock_history(stored, today, added)
    return render_page(
        "console/reward_form.html",
        title=f"Reward: {reward['name']}" if reward else "New reward",
        status=status,
        reward=reward,
        fields=fields,
        errors=errors,
        type_options=[(name, name) for name in REWARD_TYPES],
        max_codes=MAX_CODES_PER_UPLOAD,
        upload_outcome=_upload_outcome(),
        **context,
    )


def _upload_outcome() -> tuple[int, int] | None:
    """The counts a code upload's redirect names: integers only, as the query string is
    anyone's to write."""
    added = request.args.get("added", type=int)
    duplicates = request.args.get("duplicates", type=int)
    return None if added is None or duplicates is None else (added, duplicates)


@bp.get("/rewards/new")
def new_reward() -> Response:
    return _reward_form_page(
        reward=None, fields=_form_fields({"max_claims_per_user": 1}), errors=None, status=200
    )


@bp.post("/rewards/new")
def create_reward() -> BaseResponse:
    reader = FormReader(request.form)
    values = {key: value for key, value in _reward_values(reader).items() if value is not None}
    values["type"] = reader.text("type")
    try:
        body = reader.validate(CreateRewardRequest, values)
        # @endpoint hands back the view as written: it answers (AdminReward, 201).
        created, _ = cast(tuple[AdminReward, int], create_reward_definition(body=body))
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, DOMAIN_ERROR_FIELDS)
    else:
        return redirect(url_for("console.reward", reward_id=created.id, saved="created"), 303)
    return _reward_form_page(reward=None, fields=dict(request.form), errors=errors, status=422)


def _load(reward_id: str) -> dict[str, Any]:
    principal = signed_in().principal
    with runtime().session_factory() as session:
        return admin_view(
            get_reward(session, principal.tenant_id, principal.env, parse_reward_id(reward_id))
        )


@bp.get("/rewards/<reward_id>")
def reward(reward_id: str) -> Response:
    stored = _load(reward_id)
    return _reward_form_page(reward=stored, fields=_form_fields(stored), errors=None, status=200)


@bp.post("/rewards/<reward_id>")
def update_reward(reward_id: str) -> BaseResponse:
    stored = _load(reward_id)
    reader = FormReader(request.form)
    values = _reward_values(reader)
    changes = {
        name: value
        for name, value in values.items()
        if name in reader.errors.by_field or not _same(stored.get(name), value)
    }
    try:
        body = reader.validate(UpdateRewardRequest, changes)
        if changes:
            update_reward_definition(reward_id, body=body)
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, DOMAIN_ERROR_FIELDS)
    else:
        saved = "updated" if changes else "unchanged"
        return redirect(url_for("console.reward", reward_id=reward_id, saved=saved), 303)
    return _reward_form_page(reward=stored, fields=dict(request.form), errors=errors, status=422)


@bp.post("/rewards/<reward_id>/deactivate")
def deactivate_reward(reward_id: str) -> BaseResponse:
    deactivate_reward_definition(reward_id)
    return redirect(url_for("console.reward", reward_id=reward_id, saved="deactivated"), 303)


def _uploaded_codes() -> list[str]:
    upload = request.files.get("codes_file")
    if upload is None or not upload.filename:
        raise DomainError("validation_error", "Choose a file of codes to upload", 422)
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DomainError("validation_error", "The file must be UTF-8 text", 422) from None
    is_csv = upload.filename.lower().endswith(".csv") or upload.mimetype == "text/csv"
    codes = codes_from_text(text, is_csv=is_csv)
    if len(codes) > MAX_CODES_PER_UPLOAD + 1:  # +1: a CSV header has not been seen yet
        raise DomainError(
            "validation_error", f"At most {MAX_CODES_PER_UPLOAD} codes per upload", 422
        )
    return codes


@bp.post("/rewards/<reward_id>/codes")
@accepts_upload(CODES_UPLOAD_LIMIT_BYTES)
def upload_reward_codes(reward_id: str) -> BaseResponse:
    parsed_id = parse_reward_id(reward_id)
    try:
        result = store_codes(parsed_id, _uploaded_codes())
    except DomainError as error:
        if not is_htmx():
            raise
        return render_page(
            "console/alert.html", title="Upload refused", status=error.status, detail=error.detail
        )
    if is_htmx():
        return render_page("console/codes_uploaded.html", title="Codes uploaded", result=result)
    return redirect(
        url_for(
            "console.reward",
            reward_id=reward_id,
            added=result.added,
            duplicates=result.duplicates,
        ),
        303,
    )
