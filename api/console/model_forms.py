"""Form controls derived from an API request model's fields, and the posted form read back.

The program pages (api/console/program.py) render one generic form per resource: each
field of the API's pydantic request model becomes a control by its type (text, whole
number, number, decimal, date, date-time, a select for a Literal, a checkbox for a bool,
and a JSON textarea for a nested model, list or dict), and the posted strings are turned
back into typed values, a failed conversion kept as its field's error (forms.FormReader),
before the model itself validates them. So the console shows every field the API takes
and refuses what it refuses, with no form written by hand.
"""

from __future__ import annotations

import enum
import json
import math
import re
import types
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, FutureDatetime, NaiveDatetime, PastDatetime
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from api.console.forms import FormReader, form_value

# Text fields allowed this many characters or more (and no pattern) get a textarea.
LONG_TEXT_CHARS = 1000
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")
# pydantic's date-time types are classes of their own, not datetime's subclasses.
_DATETIME_TYPES = (datetime, AwareDatetime, NaiveDatetime, PastDatetime, FutureDatetime)


class Kind(enum.Enum):
    TEXT = "text"
    LONG_TEXT = "long_text"
    INTEGER = "integer"
    NUMBER = "number"  # int or float: a whole number stays an int
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"
    CHECKBOX = "checkbox"
    JSON = "json"


@dataclass(frozen=True)
class Control:
    """One form control for one model field."""

    name: str
    label: str
    kind: Kind
    hint: str | None
    required: bool
    options: tuple[str, ...] = ()  # CHOICE: the values a select offers
    json_shape: str = ""  # JSON: "object" or "list" (what the textarea must hold)
    example: str | None = None  # JSON: shown as the textarea's placeholder


def _alternatives(annotation: Any) -> tuple[list[Any], list[Any], bool]:
    """(the types an annotation allows but None, the Annotated metadata met on the way,
    whether None is allowed)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *own = get_args(annotation)
        types_, more, nullable = _alternatives(inner)
        return types_, [*own, *more], nullable
    if origin in (Union, types.UnionType):
        found: list[Any] = []
        metadata: list[Any] = []
        nullable = False
        for arg in get_args(annotation):
            if arg is type(None):
                nullable = True
                continue
            types_, more, inner_nullable = _alternatives(arg)
            found.extend(types_)
            metadata.extend(more)
            nullable = nullable or inner_nullable
        return found, metadata, nullable
    return [annotation], [], False


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _kind_of(alternatives: list[Any], prose: bool) -> tuple[Kind, tuple[str, ...], str]:
    """(kind, select options, JSON shape) for a field allowing `alternatives`."""
    origins = [get_origin(kind) or kind for kind in alternatives]
    if all(kind is Literal for kind in origins):
        options = tuple(str(value) for kind in alternatives for value in get_args(kind))
        return Kind.CHOICE, options, ""
    if len(alternatives) == 1 and isinstance(alternatives[0], type):
        only = alternatives[0]
        if issubclass(only, enum.Enum):
            return Kind.CHOICE, tuple(str(member.value) for member in only), ""
        if only is bool:
            return Kind.CHECKBOX, (), ""
        if only is int:
            return Kind.INTEGER, (), ""
        if only is Decimal:
            return Kind.DECIMAL, (), ""
        if only in _DATETIME_TYPES:
            return Kind.DATETIME, (), ""
        if only is date:
            return Kind.DATE, (), ""
        if only is str or only is uuid.UUID:
            return (Kind.LONG_TEXT if prose else Kind.TEXT), (), ""
    if set(origins) <= {int, float} and bool not in origins:
        return Kind.NUMBER, (), ""
    if all(kind is list for kind in origins):
        return Kind.JSON, (), "list"
    if all(kind is dict or _is_model(kind) for kind in origins):
        return Kind.JSON, (), "object"
    # Anything else a client sends as JSON (no model field of ours is, today).
    return Kind.JSON, (), "any"


def _is_prose(field: FieldInfo, metadata: Iterable[Any]) -> bool:
    """Whether a text field takes prose (a textarea): a long one with no pattern (a
    pattern, as a URL's, constrains a one-line token)."""
    constraints = [*field.metadata, *metadata]
    # A Field(...) inside an Annotated alias keeps its constraints in its own metadata.
    constraints += [
        inner for item in metadata if isinstance(item, FieldInfo) for inner in item.metadata
    ]
    if any(getattr(constraint, "pattern", None) for constraint in constraints):
        return False
    # pydantic keeps max_length as an annotated_types.MaxLen (or on a metadata object).
    return any(
        (getattr(constraint, "max_length", None) or 0) >= LONG_TEXT_CHARS
        for constraint in constraints
    )


def label_of(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _hint(field: FieldInfo, kind: Kind, shape: str) -> str | None:
    # The API's descriptions say what a JSON null means; a form's null is an empty field.
    notes = [field.description.replace("null: ", "empty: ")] if field.description else []
    if kind is Kind.DATETIME:
        notes.append("UTC")
    if kind is Kind.JSON:
        notes.append({"list": "a JSON list", "object": "a JSON object"}.get(shape, "JSON"))
    if kind is Kind.DATE:
        notes.append("YYYY-MM-DD")
    hint = "; ".join(notes)
    return hint[:1].upper() + hint[1:] if hint else None


def controls_of(
    model: type[BaseModel],
    *,
    only: Iterable[str] | None = None,
    examples: Mapping[str, str] | None = None,
) -> tuple[Control, ...]:
    """A control per field of `model`, in the model's order (`only`: just these fields)."""
    wanted = set(only) if only is not None else None
    controls = []
    for name, field in model.model_fields.items():
        if wanted is not None and name not in wanted:
            continue
        alternatives, metadata, _ = _alternatives(field.annotation)
        kind, options, shape = _kind_of(alternatives, _is_prose(field, metadata))
        controls.append(
            Control(
                name=name,
                label=label_of(name),
                kind=kind,
                hint=_hint(field, kind, shape),
                required=field.is_required(),
                options=options,
                json_shape=shape,
                example=(examples or {}).get(name),
            )
        )
    return tuple(controls)


def defaults_of(model: type[BaseModel]) -> dict[str, Any]:
    """The model's defaults (what a new item's form starts with), None ones left out."""
    values = {}
    for name, field in model.model_fields.items():
        if field.is_required():
            continue
        default = field.get_default(call_default_factory=True)
        if default is not None and default is not PydanticUndefined:
            values[name] = default
    return values


# --- shown values --------------------------------------------------------------------------


def shown_values(controls: Iterable[Control], stored: Mapping[str, Any]) -> dict[str, str]:
    """Stored values (JSON fields already JSON-shaped) as the controls' strings; a
    checkbox's is "on" when checked."""
    shown = {}
    for control in controls:
        value = stored.get(control.name)
        if control.kind is Kind.CHECKBOX:
            shown[control.name] = "on" if value else ""
        elif control.kind is Kind.JSON:
            shown[control.name] = "" if value is None else json.dumps(value, indent=1)
        elif isinstance(value, enum.Enum):
            shown[control.name] = str(value.value)
        else:
            shown[control.name] = form_value(value)
    return shown


def stored_values(view: BaseModel, controls: Iterable[Control]) -> dict[str, Any]:
    """An API view's values under the controls' names: JSON fields as JSON (dates as
    strings), the others as they are (datetimes stay datetimes for their control)."""
    as_json = view.model_dump(mode="json")
    as_python = view.model_dump()
    return {
        control.name: (as_json if control.kind is Kind.JSON else as_python).get(control.name)
        for control in controls
    }


# --- reading the posted form --------------------------------------------------------------


def _read_json(reader: FormReader, control: Control) -> Any:
    text = reader.raw(control.name)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        reader.errors.add(control.name, f"is not valid JSON ({exc.msg}, line {exc.lineno})")
        return None
    except RecursionError:
        reader.errors.add(control.name, "is nested too deeply")
        return None
    if control.json_shape == "object" and not isinstance(value, dict):
        reader.errors.add(control.name, 'must be a JSON object, e.g. {"key": "value"}')
        return None
    if control.json_shape == "list" and not isinstance(value, list):
        reader.errors.add(control.name, "must be a JSON list, e.g. [1, 2]")
        return None
    return value


def _read_number(reader: FormReader, control: Control) -> int | float | None:
    text = reader.raw(control.name)
    if _WHOLE_NUMBER.fullmatch(text):
        return int(text)
    value = reader.number(control.name)
    if value is not None and not math.isfinite(value):
        reader.errors.add(control.name, "must be a number")
        return None
    return value


def _read_decimal(reader: FormReader, control: Control) -> Decimal | None:
    # Not through float: 0.1 must reach a decimal_places check as 0.1, not 0.1000000000000000055.
    text = reader.raw(control.name)
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        reader.errors.add(control.name, "must be a number")
        return None
    return value


def _read_date(reader: FormReader, control: Control) -> date | None:
    text = reader.raw(control.name)
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        reader.errors.add(control.name, "must be a date (YYYY-MM-DD)")
        return None


def read_control(reader: FormReader, control: Control) -> Any:
    """The control's posted value, typed for the model (None: left empty or not readable,
    the reason kept in reader.errors)."""
    match control.kind:
        case Kind.CHECKBOX:
            return reader.checkbox(control.name)
        case Kind.INTEGER:
            return reader.integer(control.name)
        case Kind.NUMBER:
            return _read_number(reader, control)
        case Kind.DECIMAL:
            return _read_decimal(reader, control)
        case Kind.DATETIME:
            return reader.datetime_utc(control.name)
        case Kind.DATE:
            return _read_date(reader, control)
        case Kind.JSON:
            return _read_json(reader, control)
        case _:
            return reader.text(control.name)


def read_form(reader: FormReader, controls: Iterable[Control]) -> dict[str, Any]:
    """Every control's typed value (None for empty ones)."""
    return {control.name: read_control(reader, control) for control in controls}


def same_value(control: Control, stored: Any, given: Any) -> bool:
    """Whether a posted value is what is stored (so an edit leaves it out of the PATCH):
    compared as values, since a form shows them in its own way (times to the second,
    JSON re-indented, 1.0 as "1.0" or "1")."""
    if stored is None or given is None:
        if control.kind is Kind.CHECKBOX:
            return bool(stored) == bool(given)
        return stored is None and given is None
    match control.kind:
        case Kind.CHECKBOX:
            return bool(stored) == bool(given)
        case Kind.DATETIME:
            return bool(stored.replace(microsecond=0) == given.replace(microsecond=0))
        case Kind.DECIMAL | Kind.NUMBER:
            return Decimal(str(stored)) == Decimal(str(given))
        case Kind.JSON:
            return bool(stored == given)
        case _:
            shown = stored.value if isinstance(stored, enum.Enum) else stored
            return str(shown) == str(given)
