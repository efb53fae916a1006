"""The console's program pages: every resource created through its form, listed, edited,
refused beside the right field, CSRF-checked and audited (Flask client, fast).

Forms are posted as a browser would: every control of the page's form with the value it
shows (tests/test_console_program.py::form_of), the fields under test changed."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Annotated, Any, Literal

import pytest
from flask.testing import FlaskClient
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.datastructures import MultiDict

from api.console.forms import FormReader
from api.console.model_forms import Kind, controls_of, read_form
from app.coupons.generation import GENERATE_KIND
from app.models import AuditEntry, Operation
from tests.conftest import TenantKeys
from tests.console_support import form_csrf, sign_in

PROGRAM = "/console/program"


@pytest.fixture
def console(client: FlaskClient, tenant: TenantKeys) -> FlaskClient:
    answer = sign_in(client, tenant.admin_key)
    assert answer.status_code == 303, answer.text
    return client


class _FormFields(HTMLParser):
    """The controls of the form posting to `action`, as a browser submits them."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.fields: dict[str, str] = {}
        self.found = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.inside = attr.get("action") == self.action
            self.found = self.found or self.inside
        if not self.inside:
            return
        name = attr.get("name")
        if tag == "input" and name:
            if attr.get("type") == "checkbox":
                if "checked" in attr:
                    self.fields[name] = attr.get("value", "on")
            else:
                self.fields[name] = attr.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.fields.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attr:
            self.fields[self._select] = attr.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_of(client: FlaskClient, page: str, action: str | None = None) -> dict[str, str]:
    """The form on `page` posting to `action` (default: the page itself), as shown."""
    answer = client.get(page)
    assert answer.status_code == 200, answer.text
    parser = _FormFields(action or page)
    parser.feed(answer.text)
    assert parser.found, f"{page} has a form posting to {action or page}"
    return parser.fields


def submit(
    client: FlaskClient, page: str, changes: dict[str, str], action: str | None = None
) -> Any:
    fields = form_of(client, page, action)
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)  # an unchecked checkbox
        else:
            fields[name] = value
    return client.post(action or page, data=fields)


def field_error(html: str, name: str) -> str:
    """The message shown beside field `name`, checking it is tied to its control."""
    assert 'aria-describedby="' in html
    control = re.search(rf'id="f-{name}"[^>]*aria-describedby="([^"]*)"', html)
    assert control and f"error-{name}" in control.group(1).split(), f"{name} names its error"
    message = re.search(rf'<p class="field-error" id="error-{name}">([^<]*)</p>', html)
    assert message, f"an error beside {name}"
    return message.group(1)


def console_audit(
    session_factory: sessionmaker[Session], tenant_id: uuid.UUID, prefix: str
) -> list[AuditEntry]:
    with session_factory() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.tenant_id == tenant_id, AuditEntry.action.startswith(prefix))
                .order_by(AuditEntry.created_at)
            )
        )


def signed_in_key(session_factory: sessionmaker[Session], tenant_id: uuid.UUID) -> uuid.UUID:
    (entry,) = console_audit(session_factory, tenant_id, "console.signed_in")
    assert entry.actor_key_id is not None
    return entry.actor_key_id


@dataclass(frozen=True)
class Case:
    """One list resource: a valid new item, what the list then shows, an edit and how the
    API then reads it, a value refused beside its field, and its audit prefix."""

    resource: str
    create: dict[str, str]
    listed: str
    edit: dict[str, str]
    api_path: str  # the API's GET of the item, {key} filled in
    api_after_edit: dict[str, Any]
    invalid: tuple[str, str, str]  # field, value, words of the message
    audit: str
    extra: dict[str, Any] = field(default_factory=dict)


CASES = (
    Case(
        "tiers",
        {
            "code": "gold",
            "name": "Gold",
            "level": "2",
            "points_required": "1000",
            "points_multiplier": "1.5",
            "benefits": '["Free shipping"]',
        },
        "Gold",
        {"name": "Gold plus", "points_multiplier": "1.25"},
        "/api/v1/gamify/admin/tiers/{key}",
        {"name": "Gold plus", "points_multiplier": 1.25, "benefits": ["Free shipping"]},
        ("color", "red", "should match pattern"),
        "tier.",
    ),
    Case(
        "earning-rules",
        {
            "name": "Purchases",
            "action": "purchase",
            "formula": "floor(amount / 10)",
            "caps": '{"per_day": 500}',
            "starts_at": "2030-01-01T00:00",
        },
        "floor(amount / 10)",
        {"formula": "amount", "conditions": '{"min_amount": 5}'},
        "/api/v1/gamify/admin/earning-rules/{key}",
        {
            "formula": "amount",
            "conditions": {"min_amount": 5},
            "caps": {"per_day": 500},
            "starts_at": "2030-01-01T00:00:00Z",
        },
        ("caps", '{"per_day": 0}', "per_day: Input should be greater than or equal to 1"),
        "earning_rule.",
    ),
    Case(
        "badges",
        {
            "name": "Shopper",
            "category": "shopping",
            "criteria": '{"type": "action_count", "action": "purchase", "count": 5}',
        },
        "Shopper",
        {"points_reward": "50", "description": "Five purchases"},
        "/api/v1/gamify/admin/badges/{key}",
        {
            "points_reward": 50,
            "description": "Five purchases",
            "criteria": {"type": "action_count", "action": "purchase", "count": 5},
        },
        ("image_url", "not a link", "should match pattern"),
        "badge.",
    ),
    Case(
        "streaks",
        {
            "streak_type": "daily-login",
            "name": "Daily login",
            "action": "login",
            "period": "weekly",
            "milestones": '[{"days": 7, "points": 50}]',
        },
        "daily-login",
        {"grace_period_hours": "12", "timezone": "Europe/Paris"},
        "/api/v1/gamify/admin/streaks/{key}",
        {
            "grace_period_hours": 12,
            "timezone": "Europe/Paris",
            "period": "weekly",
            "milestones": [{"days": 7, "points": 50}],
        },
        ("grace_period_hours", "500", "less than or equal to 168"),
        "streak.",
    ),
    Case(
        "challenges",
        {
            "name": "Buy three",
            "type": "action_count",
            "action": "purchase",
            "target": "3",
            "reward": '{"type": "points", "amount": 100}',
        },
        "Buy three",
        {"target": "5", "requires_enrollment": "on"},
        "/api/v1/gamify/admin/challenges/{key}",
        {"target": 5, "requires_enrollment": True, "reward": {"type": "points", "amount": 100}},
        ("target", "0", "greater than or equal to 1"),
        "challenge.",
    ),
    Case(
        "leaderboards",
        {"name": "Top earners", "metric": "points_earned", "period": "monthly"},
        "Top earners",
        {"size": "50", "notify_top": "3"},
        "/api/v1/gamify/admin/leaderboards/{key}",
        {"size": 50, "notify_top": 3, "period": "monthly", "metric": "points_earned"},
        ("notify_top", "1000", "less than or equal to 100"),
        "leaderboard.",
    ),
    Case(
        "coupons",
        {
            "code": "summer25",
            "discount_type": "percentage",
            "discount_value": "25",
            "applicable_to": '["shoes"]',
            "expires_at": "2031-06-30T23:59:59",
        },
        "SUMMER25",
        {"campaign": "summer", "usage_limit": "100"},
        "/api/v1/gamify/admin/coupons/{key}",
        {
            "campaign": "summer",
            "usage_limit": 100,
            "discount_value": 25.0,
            "applicable_to": ["shoes"],
            "expires_at": "2031-06-30T23:59:59Z",
        },
        ("currency", "euro", "should match pattern"),
        "coupon.",
    ),
)


def _create(console: FlaskClient, case: Case) -> str:
    """Create the case's item through its form; its edit page's path."""
    answer = submit(console, f"{PROGRAM}/{case.resource}/new", case.create)
    assert answer.status_code == 303, answer.text
    location = answer.headers["Location"]
    assert location.startswith(f"{PROGRAM}/{case.resource}/")
    assert location.endswith("/edit?saved=created")
    return location.split("?")[0]


def _key(edit_path: str) -> str:
    return edit_path.split("/")[-2]


@pytest.mark.parametrize("case", CASES, ids=[case.resource for case in CASES])
def test_an_item_created_through_its_form_is_listed_edited_and_audited(
    console: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    case: Case,
) -> None:
    edit_path = _create(console, case)
    assert "Created." in console.get(f"{edit_path}?saved=created").text

    listing = console.get(f"{PROGRAM}/{case.resource}")
    assert listing.status_code == 200
    assert case.listed in listing.text
    assert f'href="{edit_path}"' in listing.text

    edited = submit(console, edit_path, case.edit)
    assert edited.status_code == 303, edited.text
    assert edited.headers["Location"] == f"{edit_path}?saved=updated"

    stored = console.get(case.api_path.format(key=_key(edit_path)), headers=tenant.admin())
    assert stored.status_code == 200
    for name, value in case.api_after_edit.items():
        assert stored.json[name] == value, name

    key_id = signed_in_key(session_factory, tenant.tenant_id)
    entries = console_audit(session_factory, tenant.tenant_id, case.audit)
    assert [entry.action for entry in entries] == [f"{case.audit}created", f"{case.audit}updated"]
    for entry in entries:
        assert entry.actor_key_id == key_id
        assert entry.details is not None and entry.details["via"] == "console"


@pytest.mark.parametrize("case", CASES, ids=[case.resource for case in CASES])
def test_a_refused_value_is_shown_beside_its_field_and_nothing_is_written(
    console: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    case: Case,
) -> None:
    name, value, words = case.invalid
    answer = submit(console, f"{PROGRAM}/{case.resource}/new", {**case.create, name: value})

    assert answer.status_code == 422
    assert words in field_error(answer.text, name)
    # The form comes back as it was sent, the other fields' values kept.
    assert case.create[next(iter(case.create))] in answer.text
    assert console_audit(session_factory, tenant.tenant_id, case.audit) == []

    # The same refusal on the edit form, the stored item unchanged.
    edit_path = _create(console, case)
    refused = submit(console, edit_path, {name: value})
    assert refused.status_code == 422
    assert words in field_error(refused.text, name)
    assert len(console_audit(session_factory, tenant.tenant_id, case.audit)) == 1


def test_saving_an_edit_form_untouched_writes_nothing(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    # Every kind of control, shown and read back: times, decimals, JSON, checkboxes.
    edit_paths = [_create(console, case) for case in CASES]
    for edit_path in edit_paths:
        answer = submit(console, edit_path, {})
        assert answer.headers["Location"] == f"{edit_path}?saved=unchanged", edit_path
    updates = [
        entry.action
        for entry in console_audit(session_factory, tenant.tenant_id, "")
        if entry.action.endswith(".updated")
    ]
    assert updates == []


def test_a_json_field_that_is_not_json_says_so_beside_it(console: FlaskClient) -> None:
    badges = next(case for case in CASES if case.resource == "badges")
    answer = submit(console, f"{PROGRAM}/badges/new", {**badges.create, "criteria": "{type: x"})

    assert answer.status_code == 422
    assert "is not valid JSON" in field_error(answer.text, "criteria")

    listed = submit(console, f"{PROGRAM}/badges/new", {**badges.create, "criteria": "[1]"})
    assert "must be a JSON object" in field_error(listed.text, "criteria")


def test_a_domain_conflict_is_shown_beside_the_field_it_concerns(console: FlaskClient) -> None:
    tiers = CASES[0]
    _create(console, tiers)
    again = submit(console, f"{PROGRAM}/tiers/new", {**tiers.create, "code": "silver"})

    assert again.status_code == 422
    assert "level" in field_error(again.text, "level").lower()


def test_deleting_a_tier_removes_it_and_is_audited(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    edit_path = _create(console, CASES[0])
    remove_path = edit_path.removesuffix("/edit") + "/remove"
    answer = console.post(remove_path, data={"csrf_token": form_csrf(console.get(edit_path).text)})

    assert answer.headers["Location"] == f"{PROGRAM}/tiers?saved=deleted"
    assert "No tiers yet" in console.get(f"{PROGRAM}/tiers").text
    assert console.get(edit_path).status_code == 404
    actions = [entry.action for entry in console_audit(session_factory, tenant.tenant_id, "tier.")]
    assert actions == ["tier.created", "tier.deleted"]


def test_deactivating_a_badge_keeps_it_listed_as_inactive(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    edit_path = _create(console, CASES[2])
    remove_path = edit_path.removesuffix("/edit") + "/remove"
    assert "Deactivate this badge" in console.get(edit_path).text
    answer = console.post(remove_path, data={"csrf_token": form_csrf(console.get(edit_path).text)})

    assert answer.headers["Location"] == f"{edit_path}?saved=deactivated"
    page = console.get(answer.headers["Location"]).text
    assert "Deactivated." in page
    assert "Deactivate this badge" not in page
    assert 'name="active" type="checkbox" value="on" checked' not in page
    assert [entry.action for entry in console_audit(session_factory, tenant.tenant_id, "badge.")][
        -1
    ] == "badge.deactivated"


def test_program_settings_are_changed_through_their_form(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    page = f"{PROGRAM}/settings"
    refused = submit(console, page, {"tier_qualification": '{"basis": "rolling"}'})
    assert refused.status_code == 422
    assert "a rolling basis needs window_days" in field_error(refused.text, "tier_qualification")

    answer = submit(
        console,
        page,
        {
            "points_expiry_days": "365",
            "tier_qualification": '{"basis": "rolling", "window_days": 90}',
            "holidays": '["2030-12-25"]',
        },
    )
    assert answer.status_code == 303, answer.text
    program = console.get("/api/v1/gamify/admin/program", headers=tenant.admin()).json
    assert program["points_expiry_days"] == 365
    assert program["tier_qualification"] == {"basis": "rolling", "window_days": 90}
    assert program["holidays"] == ["2030-12-25"]
    (entry,) = console_audit(session_factory, tenant.tenant_id, "program.")
    assert entry.details is not None and entry.details["via"] == "console"
    assert sorted(entry.details["changed"]) == [
        "holidays",
        "points_expiry_days",
        "tier_window_days",
    ]


def test_the_referral_program_is_configured_through_its_form(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    page = f"{PROGRAM}/referrals"
    missing = submit(console, page, {"referrer_points": ""})
    assert missing.status_code == 422
    assert "Field required" in field_error(missing.text, "referrer_points")

    answer = submit(
        console,
        page,
        {"referrer_points": "100", "referee_points": "50", "min_qualifying_amount": "20.5"},
    )
    assert answer.status_code == 303, answer.text
    program = console.get("/api/v1/gamify/admin/referral-program", headers=tenant.admin()).json
    assert (program["configured"], program["referrer_points"], program["referee_points"]) == (
        True,
        100,
        50,
    )
    assert program["min_qualifying_amount"] == 20.5
    (entry,) = console_audit(session_factory, tenant.tenant_id, "referral_program.")
    assert entry.details is not None and entry.details["via"] == "console"


def test_generating_coupon_codes_queues_one_job_per_form(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    edit_path = _create(console, CASES[-1])
    action = edit_path.removesuffix("/edit") + "/generate"
    refused = submit(console, edit_path, {"count": "0"}, action=action)
    assert refused.status_code == 422
    assert "greater than or equal to 1" in field_error(refused.text, "count")

    fields = {**form_of(console, edit_path, action), "count": "25", "prefix": "sum"}
    first = console.post(action, data=fields)
    second = console.post(action, data=fields)  # the same form sent twice

    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    assert "generation=" in first.headers["Location"]
    shown = console.get(first.headers["Location"]).text
    assert "Code generation" in shown
    assert "queued" in shown or "succeeded" in shown
    with session_factory() as session:
        operations = session.scalars(
            select(Operation).where(
                Operation.tenant_id == tenant.tenant_id, Operation.kind == GENERATE_KIND
            )
        ).all()
    assert len(operations) == 1
    assert operations[0].payload["count"] == 25 and operations[0].payload["prefix"] == "SUM"
    generated = console_audit(session_factory, tenant.tenant_id, "coupon.codes_generated")
    assert len(generated) == 1 and generated[0].details == {"count": 25, "via": "console"}
    # The codes are a tenant's secrets: their download is never stored by a cache.
    download = console.get(edit_path.removesuffix("/edit") + "/codes.csv")
    assert download.mimetype == "text/csv"
    assert download.headers["Cache-Control"] == "no-store"
    download.close()


# Every program form: (resource, form), the item's forms reached through a created item.
FORMS = (
    ("settings", "settings"),
    ("referrals", "settings"),
    *((case.resource, form) for case in CASES for form in ("new", "edit", "remove")),
    ("coupons", "generate"),
)


def _form_action(console: FlaskClient, resource: str, form: str) -> tuple[str, str]:
    """(the page showing the form, the form's action)."""
    if form == "settings":
        return f"{PROGRAM}/{resource}", f"{PROGRAM}/{resource}"
    if form == "new":
        return f"{PROGRAM}/{resource}/new", f"{PROGRAM}/{resource}/new"
    edit_path = _create(console, next(case for case in CASES if case.resource == resource))
    if form == "edit":
        return edit_path, edit_path
    return edit_path, edit_path.removesuffix("/edit") + f"/{form}"


@pytest.mark.parametrize(("resource", "form"), FORMS, ids=["-".join(form) for form in FORMS])
def test_every_program_form_refuses_a_post_without_its_csrf_token(
    console: FlaskClient,
    tenant: TenantKeys,
    session_factory: sessionmaker[Session],
    resource: str,
    form: str,
) -> None:
    page, action = _form_action(console, resource, form)
    fields = form_of(console, page, action)
    assert fields.pop("csrf_token")
    before = len(console_audit(session_factory, tenant.tenant_id, ""))

    for token in (None, "forged"):
        sent = fields if token is None else {**fields, "csrf_token": token}
        answer = console.post(action, data=sent)
        assert answer.status_code == 400, (action, token)
        assert "Form refused" in answer.text
    assert len(console_audit(session_factory, tenant.tenant_id, "")) == before


def test_the_program_pages_are_titled_labelled_and_refuse_unknown_ones(
    console: FlaskClient,
) -> None:
    index = console.get(PROGRAM)
    assert "<title>Program" in index.text
    # The nav marks the program section on its inner pages too.
    for page in (PROGRAM, f"{PROGRAM}/tiers", f"{PROGRAM}/tiers/new", f"{PROGRAM}/settings"):
        assert f'<a href="{PROGRAM}" aria-current="page">Program</a>' in console.get(page).text
    for case in CASES:
        assert f'href="{PROGRAM}/{case.resource}"' in index.text
        new = console.get(f"{PROGRAM}/{case.resource}/new").text
        # Every control has a label.
        for control_id in re.findall(r'<(?:input|select|textarea) id="(f-[^"]+)"', new):
            assert f'<label for="{control_id}">' in new, (case.resource, control_id)
    assert console.get(f"{PROGRAM}/nothing").status_code == 404
    assert console.get(f"{PROGRAM}/tiers/absent/edit").status_code == 404
    assert console.get(f"{PROGRAM}/coupons?page=0").status_code == 422
    assert (
        console.post(f"{PROGRAM}/tiers", data={"csrf_token": form_csrf(index.text)}).status_code
        == 405
    )


def test_malformed_keys_and_values_get_pages_never_a_500(
    console: FlaskClient, tenant: TenantKeys, session_factory: sessionmaker[Session]
) -> None:
    for case in CASES:
        assert console.get(f"{PROGRAM}/{case.resource}/not-a-key/edit").status_code == 404
    assert console.get(f"{PROGRAM}/coupons/not-a-key/codes.csv").status_code == 404
    # PostgreSQL text cannot hold U+0000: a key with it names nothing (it was a 500).
    for case in CASES:
        assert console.get(f"{PROGRAM}/{case.resource}/a%00b/edit").status_code == 404

    hostile = {
        "referrer_points": "1e999",
        "referee_points": "NaN",
        "min_qualifying_amount": "inf",
        "completion_action": "buy\x00",
        "expiration_days": "9" * 60,
    }
    answer = submit(console, f"{PROGRAM}/referrals", hostile)
    assert answer.status_code == 422
    assert "whole number" in field_error(answer.text, "referrer_points")
    assert "must be a number" in field_error(answer.text, "min_qualifying_amount")
    assert "NUL" in field_error(answer.text, "completion_action")
    assert "less than or equal" in field_error(answer.text, "expiration_days")

    deep = submit(console, f"{PROGRAM}/settings", {"holidays": "[" * 100_000})
    assert deep.status_code == 422
    assert field_error(deep.text, "holidays")
    assert console_audit(session_factory, tenant.tenant_id, "referral_program.") == []


class _EveryKind(BaseModel):
    name: Annotated[str, Field(max_length=50)]
    notes: Annotated[str, Field(max_length=2000)] | None = None
    link: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    count: Annotated[int, Field(strict=True, ge=1)] = 3
    amount: int | float | None = None
    price: Decimal | None = None
    day: date | None = None
    at: AwareDatetime | None = None
    kind: Literal["a", "b"] = "a"
    on: bool = True
    tags: list[str] | None = None
    extra: dict[str, Any] | None = None
    nested: _EveryKindPart | None = None


class _EveryKindPart(BaseModel):
    x: int


_EveryKind.model_rebuild()


def test_each_field_type_gets_its_control_and_reads_back_typed() -> None:
    controls = {control.name: control for control in controls_of(_EveryKind)}
    kinds = {name: (control.kind, control.json_shape) for name, control in controls.items()}
    assert kinds == {
        "name": (Kind.TEXT, ""),
        "notes": (Kind.LONG_TEXT, ""),
        "link": (Kind.TEXT, ""),
        "count": (Kind.INTEGER, ""),
        "amount": (Kind.NUMBER, ""),
        "price": (Kind.DECIMAL, ""),
        "day": (Kind.DATE, ""),
        "at": (Kind.DATETIME, ""),
        "kind": (Kind.CHOICE, ""),
        "on": (Kind.CHECKBOX, ""),
        "tags": (Kind.JSON, "list"),
        "extra": (Kind.JSON, "object"),
        "nested": (Kind.JSON, "object"),
    }
    assert controls["kind"].options == ("a", "b")
    assert controls["name"].required and not controls["count"].required

    posted = MultiDict(
        {
            "name": " Ann ",
            "count": "7",
            "amount": "2",
            "price": "0.1",
            "day": "2030-02-03",
            "at": "2030-02-03T04:05",
            "kind": "b",
            "tags": '["x"]',
            "extra": "{}",
            "nested": "[]",
        }
    )
    reader = FormReader(posted)
    values = read_form(reader, controls.values())
    assert values["name"] == "Ann" and values["notes"] is None
    assert values["count"] == 7 and values["amount"] == 2 and isinstance(values["amount"], int)
    assert values["price"] == Decimal("0.1")
    assert values["day"] == date(2030, 2, 3)
    assert values["at"] == datetime(2030, 2, 3, 4, 5, tzinfo=UTC)
    assert values["on"] is False and values["tags"] == ["x"] and values["extra"] == {}
    assert values["nested"] is None
    assert reader.errors.get("nested") == ['must be a JSON object, e.g. {"key": "value"}']
