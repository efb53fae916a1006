"""Reading HTML forms into the API's pydantic models, and their errors beside the fields.

A form posts strings; the API's models take typed JSON (some fields strict). FormReader
converts each field by the type the form control holds, keeping a conversion failure as
that field's error; `validate` then runs the API's own model, so the console accepts and
refuses exactly what the API does, and reports both kinds of failure per field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.datastructures import MultiDict

from api.endpoint import request_invalid
from app.errors import DomainError

M = TypeVar("M", bound=BaseModel)
# Where a field sits in an API error's loc: the first part names the request part.
_REQUEST_PARTS = frozenset({"body", "query", "path"})
# datetime-local controls post these (seconds shown when the control has step=1).
_DATETIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


@dataclass
class FieldErrors:
    """Messages per form field; `general` holds what names no field (shown atop the form)."""

    by_field: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def add(self, name: str | None, message: str) -> None:
        if name:
            self.by_field.setdefault(name, []).append(message)
        else:
            self.general.append(message)

    def get(self, name: str) -> list[str]:
        return self.by_field.get(name, [])

    @classmethod
    def from_error(
        cls,
        error: ValidationError | DomainError,
        code_fields: Mapping[str, str] | None = None,
        field_names: Mapping[str, str] | None = None,
    ) -> FieldErrors:
        """Field messages from a pydantic ValidationError or a DomainError: a 422's
        `errors` list by their loc, a code listed in `code_fields` (code -> field) on that
        field, anything else as a general message. `field_names` renames an API field to
        the form's (e.g. {"awards": "file"})."""
        errors = cls()
        if isinstance(error, ValidationError):
            entries: Iterable[Mapping[str, Any]] = error.errors(
                include_url=False, include_context=False, include_input=False
            )
        elif error.code == "validation_error" and error.extra.get("errors"):
            entries = error.extra["errors"]
        else:
            errors.add((code_fields or {}).get(error.code), error.detail)
            return errors
        for entry in entries:
            loc = list(entry.get("loc", ()))
            name = _field_of(loc)
            if name is not None and field_names:
                name = field_names.get(name, name)
            message = _message(str(entry.get("msg", "is not valid")))
            errors.add(name, _within(loc, name, message))
        return errors

    def merged(self, other: FieldErrors) -> FieldErrors:
        """These errors plus `other`'s for fields that have none here (a conversion error
        is the one to show, not the model's complaint about the missing value)."""
        result = FieldErrors({k: list(v) for k, v in self.by_field.items()}, list(self.general))
        for name, messages in other.by_field.items():
            if name not in result.by_field:
                result.by_field[name] = list(messages)
        result.general.extend(other.general)
        return result


def _field_of(loc: list[Any]) -> str | None:
    if loc and loc[0] in _REQUEST_PARTS:
        loc = loc[1:]
    return str(loc[0]) if loc and isinstance(loc[0], str) else None


def _within(loc: list[Any], name: str | None, message: str) -> str:
    """A message about a part of a field (a key of a JSON field) names that part."""
    if loc and loc[0] in _REQUEST_PARTS:
        loc = loc[1:]
    inner = [str(part) for part in loc[1:]] if name is not None else []
    return f"{'.'.join(inner)}: {message}" if inner else message


def _message(msg: str) -> str:
    # pydantic's "Value error, must be ..." reads as "must be ...".
    return msg.removeprefix("Value error, ")


class FormInvalid(Exception):
    def __init__(self, errors: FieldErrors) -> None:
        super().__init__("form invalid")
        self.errors = errors


class FormReader:
    """Typed values from a posted form; each failed conversion is its field's error.

    Every reader returns None for an empty control (the API's "not given" or null)."""

    def __init__(self, form: MultiDict[str, str]) -> None:
        self.form = form
        self.errors = FieldErrors()

    def raw(self, name: str) -> str:
        return self.form.get(name, "").strip()

    def text(self, name: str) -> str | None:
        return self.raw(name) or None

    def integer(self, name: str) -> int | None:
        value = self.raw(name)
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            self.errors.add(name, "must be a whole number")
            return None

    def number(self, name: str) -> float | None:
        value = self.raw(name)
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            self.errors.add(name, "must be a number")
            return None

    def checkbox(self, name: str) -> bool:
        return name in self.form

    def boolean(self, name: str) -> bool | None:
        """A select of "", "true", "false" (any / yes / no)."""
        value = self.raw(name)
        if value not in ("", "true", "false"):
            self.errors.add(name, "must be yes or no")
            return None
        return None if value == "" else value == "true"

    def datetime_utc(self, name: str) -> datetime | None:
        """A datetime-local control's value, read as UTC (the form says so)."""
        value = self.raw(name)
        if not value:
            return None
        for pattern in _DATETIME_FORMATS:
            try:
                return datetime.strptime(value, pattern).replace(tzinfo=UTC)
            except ValueError:
                continue
        self.errors.add(name, "must be a date and time (YYYY-MM-DDTHH:MM)")
        return None

    def json_object(self, name: str) -> dict[str, Any] | None:
        value = self.raw(name)
        if not value:
            return None
        try:
            parsed = json.loads(value)
        except ValueError:
            self.errors.add(name, 'must be a JSON object, e.g. {"key": "value"}')
            return None
        if not isinstance(parsed, dict):
            self.errors.add(name, 'must be a JSON object, e.g. {"key": "value"}')
            return None
        return parsed

    def validate(self, model: type[M], values: Mapping[str, Any]) -> M:
        """`values` validated by `model` (the API's request model); FormInvalid with every
        field's errors, conversion errors first."""
        failed = set(self.errors.by_field)
        try:
            parsed = model.model_validate({k: v for k, v in values.items() if k not in failed})
        except ValidationError as exc:
            raise FormInvalid(self.errors.merged(FieldErrors.from_error(exc))) from None
        if self.errors:
            raise FormInvalid(self.errors)
        return parsed


def parse_console_query(model: type[M], args: Mapping[str, str] | None = None) -> M:
    """The query string (or `args`) validated by `model`, empty parameters left out (a
    filter form's "any" choice sends `name=`); a bad value is the API's 422, which the
    console renders as a page."""
    given = request.args if args is None else args
    values = {name: value for name, value in given.items() if value.strip()}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise request_invalid("query", exc) from None


def form_value(value: Any) -> str:
    """How a stored value is shown in a form control (the inverse of FormReader)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(value, indent=1, ensure_ascii=False)
    return str(value)
