"""The 23blocks reference's examples (tests/contract/blocks_examples.json, extracted from the
document by tests/contract/extract_blocks_examples.py) and the checks the dialect's contract
tests make with them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

EXAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "contract" / "blocks_examples.json").read_text()
)
MEDIA_TYPE = "application/vnd.api+json"


def endpoint_example(section: str, method: str, path: str) -> dict[str, Any]:
    """The documented example of `method path` (path as the document writes it)."""
    for example in EXAMPLES[section]["endpoints"]:
        if example["method"] == method and example["path"] == path:
            return copy.deepcopy(example)  # a test may change its copy, not the next test's
    raise KeyError(f"{section}: no example of {method} {path}")


def object_example(section: str, name: str) -> dict[str, Any]:
    return copy.deepcopy(EXAMPLES[section]["objects"][name])  # type: ignore[no-any-return]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def mismatches(
    actual: Any, documented: Any, where: str = "", nullable: frozenset[str] = frozenset()
) -> list[str]:
    """How `actual` fails to carry every field of `documented` with its type and name.

    A documented null accepts any value; a documented non-null accepts null only at the
    pointers listed in `nullable` (values the test's data leaves empty). Array items are
    checked against the documented first item."""
    if documented is None:
        return []
    if actual is None:
        return (
            [] if where in nullable else [f"{where or '/'}: null, documented {_kind(documented)}"]
        )
    if _kind(actual) != _kind(documented):
        return [f"{where or '/'}: {_kind(actual)}, documented {_kind(documented)}"]
    problems: list[str] = []
    if where.endswith("/metadata"):
        return problems  # the caller's own data: an object, whatever it holds
    if isinstance(documented, dict):
        for name, value in documented.items():
            if name not in actual:
                problems.append(f"{where}/{name}: missing")
            else:
                problems += mismatches(actual[name], value, f"{where}/{name}", nullable)
    elif isinstance(documented, list) and documented:
        if not actual:
            problems.append(f"{where}: empty, documented with items")
        for item in actual:
            problems += mismatches(item, documented[0], f"{where}/*", nullable)
    return problems


def assert_conforms(actual: Any, documented: Any, *nullable: str) -> None:
    problems = mismatches(actual, documented, nullable=frozenset(nullable))
    assert not problems, "\n".join(problems)


def send(
    client: FlaskClient,
    method: str,
    path: str,
    tenant_headers: dict[str, str],
    body: Any = None,
    **headers: str,
) -> Any:
    """A dialect request as a 23blocks client makes it: JSON:API media type both ways."""
    return client.open(
        path,
        method=method,
        data=json.dumps(body) if body is not None else None,
        headers={
            **tenant_headers,
            **({"Content-Type": MEDIA_TYPE} if body is not None else {}),
            "Accept": MEDIA_TYPE,
            **{name.replace("_", "-"): value for name, value in headers.items()},
        },
    )


def with_attributes(example_body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The documented request body with some attributes changed (kebab-case names)."""
    body = json.loads(json.dumps(example_body))
    for name, value in changes.items():
        body["data"]["attributes"][name.replace("_", "-")] = value
    return body
