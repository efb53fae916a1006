"""The program pages: /console/program and a section per resource of
api/console/program_resources.py (list, create, edit, delete or deactivate), every one
rendered by the same views and templates from its declaration; plus a coupon's generated
codes (generate, see, download)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Response, abort, request, url_for
from pydantic import BaseModel
from werkzeug.wrappers import Response as BaseResponse

from api.console import bp
from api.console.forms import FieldErrors, FormInvalid, FormReader
from api.console.model_forms import (
    Control,
    Kind,
    controls_of,
    defaults_of,
    label_of,
    read_form,
    same_value,
    shown_values,
    stored_values,
)
from api.console.pages import FORM_TOKEN_FIELD, render_page, signed_in
from api.console.program_resources import BY_NAME, RESOURCES, ProgramResource, answered
from api.coupons.admin import codes_csv, submit_code_generation
from api.coupons.schemas import GenerateRequest
from api.endpoint import parse_query
from api.operations import find_operation, operation_view
from api.runtime import runtime
from api.schemas import PageQuery
from api.write_path import IDEMPOTENCY_KEY_PATTERN
from app.coupons.definitions import generated_codes_page, get_coupon
from app.errors import DomainError

# What a save answers with, by the `saved` of the redirect after it.
SAVED_MESSAGES = {
    "created": "Created.",
    "updated": "Saved.",
    "unchanged": "Nothing changed, so nothing was saved.",
    "deactivated": "Deactivated.",
    "deleted": "Deleted.",
}
GENERATED_CODES_SHOWN = 20
GENERATE_CONTROLS = controls_of(GenerateRequest)


def _resource(name: str) -> ProgramResource:
    resource = BY_NAME.get(name)
    if resource is None:
        abort(404)
    return resource


def _ordered(controls: Iterable[Control], first: tuple[str, ...]) -> tuple[Control, ...]:
    listed = list(controls)
    rank = {name: index for index, name in enumerate(first)}
    return tuple(sorted(listed, key=lambda control: rank.get(control.name, len(rank))))


def _create_controls(resource: ProgramResource) -> tuple[Control, ...]:
    assert resource.create_model is not None
    return _ordered(
        controls_of(resource.create_model, examples=resource.examples), resource.first_fields
    )


def _update_controls(resource: ProgramResource) -> tuple[Control, ...]:
    return _ordered(
        controls_of(resource.update_model, examples=resource.examples), resource.first_fields
    )


def _facts(view: BaseModel, controls: Iterable[Control]) -> list[tuple[str, Any]]:
    """The view's fields the form does not change (keys, counts, timestamps), to show."""
    editable = {control.name for control in controls}
    return [
        (label_of(name), value) for name, value in view.model_dump().items() if name not in editable
    ]


def _item_url(resource: ProgramResource, view: BaseModel, **args: Any) -> str:
    if resource.singleton:
        return url_for("console.program_section", name=resource.name, **args)
    key = str(getattr(view, resource.key_field))
    return url_for("console.program_item", name=resource.name, key=key, **args)


def _saved_message() -> str | None:
    return SAVED_MESSAGES.get(request.args.get("saved", ""))


def _form_page(
    resource: ProgramResource,
    *,
    view: BaseModel | None,
    controls: tuple[Control, ...],
    values: Mapping[str, str],
    errors: FieldErrors | None,
    status: int = 200,
    **extra: Any,
) -> Response:
    if view is None:
        title = f"New {resource.noun}"
        action = url_for("console.program_new", name=resource.name)
    elif resource.singleton:
        title = resource.title
        action = _item_url(resource, view)
    else:
        title = f"{resource.noun.capitalize()}: {getattr(view, resource.title_field)}"
        action = _item_url(resource, view)
    context: dict[str, Any] = {}
    if view is not None and resource.name == "coupons":
        context = _coupon_codes_context(str(getattr(view, resource.key_field)))
    return render_page(
        "console/program_form.html",
        title=title,
        status=status,
        resource=resource,
        item=view,
        item_key=str(getattr(view, resource.key_field)) if view and resource.key_field else "",
        controls=controls,
        values=values,
        errors=errors,
        action=action,
        facts=_facts(view, controls) if view is not None else [],
        message=_saved_message(),
        is_active=bool(getattr(view, resource.active_field, False)) if view else False,
        **{**context, **extra},
    )


# --- the index and the sections ----------------------------------------------------------


@bp.get("/program")
def program() -> Response:
    return render_page("console/program_index.html", title="Program", resources=RESOURCES)


@bp.get("/program/<name>")
def program_section(name: str) -> Response:
    resource = _resource(name)
    if resource.singleton:
        return _edit_page(resource, "")
    assert resource.list_page is not None
    query = parse_query(PageQuery)  # a bad page number is a 422 page, never a 500
    items, total = resource.list_page(query.page)
    rows = [(_item_url(resource, item), item) for item in items]
    return render_page(
        "console/program_list.html",
        title=resource.title,
        resource=resource,
        rows=rows,
        total=total,
        page=query.page,
        page_size=len(items) if total is None else query.page_size,
        message=_saved_message(),
    )


@bp.post("/program/<name>")
def save_program_section(name: str) -> BaseResponse:
    resource = _resource(name)
    if not resource.singleton:
        abort(405)
    return _save_edit(resource, "")


# --- create ------------------------------------------------------------------------------


def _creatable(name: str) -> ProgramResource:
    resource = _resource(name)
    if resource.create is None:
        abort(404)
    return resource


@bp.get("/program/<name>/new")
def program_new(name: str) -> Response:
    resource = _creatable(name)
    assert resource.create_model is not None
    controls = _create_controls(resource)
    values = shown_values(controls, _json_shaped(controls, defaults_of(resource.create_model)))
    return _form_page(resource, view=None, controls=controls, values=values, errors=None)


def _json_shaped(controls: Iterable[Control], values: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults as the controls show them: JSON fields' models dumped as JSON."""
    json_names = {control.name for control in controls if control.kind is Kind.JSON}
    return {
        name: value.model_dump(mode="json")
        if name in json_names and isinstance(value, BaseModel)
        else value
        for name, value in values.items()
    }


@bp.post("/program/<name>/new")
def program_create(name: str) -> BaseResponse:
    resource = _creatable(name)
    assert resource.create is not None and resource.create_model is not None
    controls = _create_controls(resource)
    reader = FormReader(request.form)
    values = {key: value for key, value in read_form(reader, controls).items() if value is not None}
    try:
        body = reader.validate(resource.create_model, values)
        created = answered(resource.create(body=body))
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, resource.code_fields)
    else:
        return _redirect(_item_url(resource, created, saved="created"))
    return _form_page(
        resource,
        view=None,
        controls=controls,
        values=dict(request.form),
        errors=errors,
        status=422,
    )


def _redirect(location: str) -> BaseResponse:
    return Response(status=303, headers={"Location": location})


# --- edit --------------------------------------------------------------------------------


def _load(resource: ProgramResource, key: str) -> BaseModel:
    view: BaseModel = answered(resource.load(key))
    return view


def _edit_page(resource: ProgramResource, key: str) -> Response:
    view = _load(resource, key)
    controls = _update_controls(resource)
    values = shown_values(controls, stored_values(view, controls))
    return _form_page(resource, view=view, controls=controls, values=values, errors=None)


@bp.get("/program/<name>/<key>/edit")
def program_item(name: str, key: str) -> Response:
    resource = _resource(name)
    if resource.singleton:
        abort(404)
    return _edit_page(resource, key)


@bp.post("/program/<name>/<key>/edit")
def program_update(name: str, key: str) -> BaseResponse:
    resource = _resource(name)
    if resource.singleton:
        abort(404)
    return _save_edit(resource, key)


def _changes(
    resource: ProgramResource,
    controls: Iterable[Control],
    reader: FormReader,
    view: BaseModel,
) -> dict[str, Any]:
    """What the form sends: a PUT every field given; a PATCH only the fields whose value
    differs from the stored one (and those that failed to convert, to show their error)."""
    given = read_form(reader, controls)
    if resource.whole_update:
        return {name: value for name, value in given.items() if value is not None}
    stored = stored_values(view, controls)
    return {
        control.name: given[control.name]
        for control in controls
        if control.name in reader.errors.by_field
        or not same_value(control, stored[control.name], given[control.name])
    }


def _save_edit(resource: ProgramResource, key: str) -> BaseResponse:
    view = _load(resource, key)
    controls = _update_controls(resource)
    reader = FormReader(request.form)
    changes = _changes(resource, controls, reader, view)
    try:
        body = reader.validate(resource.update_model, changes)
        if changes:
            view = answered(resource.update(key, body))
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error, resource.code_fields)
    else:
        return _redirect(_item_url(resource, view, saved="updated" if changes else "unchanged"))
    return _form_page(
        resource, view=view, controls=controls, values=dict(request.form), errors=errors, status=422
    )


# --- delete or deactivate ------------------------------------------------------------------


@bp.post("/program/<name>/<key>/remove")
def program_remove(name: str, key: str) -> BaseResponse:
    resource = _resource(name)
    if resource.remove is None:
        abort(404)
    resource.remove(key)
    if resource.removal == "delete":
        return _redirect(url_for("console.program_section", name=resource.name, saved="deleted"))
    return _redirect(
        url_for("console.program_item", name=resource.name, key=key, saved="deactivated")
    )


# --- a coupon's generated codes ------------------------------------------------------------


def _coupon_codes_context(coupon_key: str) -> dict[str, Any]:
    principal = signed_in().principal
    with runtime().session_factory() as session:
        coupon = get_coupon(session, principal.tenant_id, principal.env, coupon_key)
        codes, total = generated_codes_page(session, coupon.id, 0, GENERATED_CODES_SHOWN)
    context: dict[str, Any] = {
        "generated_codes": [(code, redemption_id) for code, redemption_id in codes],
        "generated_total": total,
        "generate_controls": GENERATE_CONTROLS,
        "generate_values": shown_values(GENERATE_CONTROLS, defaults_of(GenerateRequest)),
        "generate_errors": None,
        "generation": None,
    }
    generation_id = request.args.get("generation", "")
    if _is_uuid(generation_id):
        context["generation"] = operation_view(find_operation(generation_id))
    return context


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@bp.post("/program/coupons/<key>/generate")
def program_generate_codes(key: str) -> BaseResponse:
    """Generate codes of a coupon: the API's job, idempotent on the form's token, so a
    form sent twice starts one generation."""
    resource = BY_NAME["coupons"]
    view = _load(resource, key)
    reader = FormReader(request.form)
    values = {
        name: value
        for name, value in read_form(reader, GENERATE_CONTROLS).items()
        if value is not None
    }
    form_key = request.form.get(FORM_TOKEN_FIELD, "")
    try:
        body = reader.validate(GenerateRequest, values)
        if not IDEMPOTENCY_KEY_PATTERN.fullmatch(form_key):
            raise DomainError(
                "IDEMPOTENCY_KEY_INVALID", "The form's token is missing: reload the page", 400
            )
        operation = submit_code_generation(key, body, form_key)
    except FormInvalid as invalid:
        errors = invalid.errors
    except DomainError as error:
        errors = FieldErrors.from_error(error)
    else:
        return _redirect(_item_url(resource, view, generation=str(operation.id)))
    controls = _update_controls(resource)
    return _form_page(
        resource,
        view=view,
        controls=controls,
        values=shown_values(controls, stored_values(view, controls)),
        errors=None,
        status=422,
        generate_values=dict(request.form),
        generate_errors=errors,
    )


@bp.get("/program/coupons/<key>/codes.csv")
def program_coupon_codes_csv(key: str) -> Response:
    principal = signed_in().principal
    with runtime().session_factory() as session:
        coupon = get_coupon(session, principal.tenant_id, principal.env, key)
    return codes_csv([coupon.id], f"coupon-{coupon.id}-codes.csv")
