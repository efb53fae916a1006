"""Path parameters the pydantic models never see: whatever a client puts there, every
route of both dialects answers it as a client error, never a 5xx."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import TenantKeys

# U+0000: PostgreSQL text cannot hold it, so a query comparing with it fails (a 500)
# unless the id is refused, or found to name nothing, before the query.
HOSTILE_IDS = ("a%00b", "%00", "x" * 300)


@pytest.mark.parametrize("path_id", HOSTILE_IDS, ids=("nul-inside", "nul-only", "300-chars"))
def test_every_route_answers_a_hostile_path_id_without_a_5xx(
    flask_app: Flask, client: FlaskClient, tenant: TenantKeys, path_id: str
) -> None:
    server_errors = []
    for rule in flask_app.url_map.iter_rules():
        if "<" not in rule.rule or rule.endpoint.endswith("static"):
            continue
        path = re.sub(r"<[^>]+>", path_id, rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            answer = client.open(
                path,
                method=method,
                headers={"X-API-Key": tenant.admin_key},
                json=None if method == "GET" else {},
            )
            if answer.status_code >= 500:
                server_errors.append(f"{method} {path}: {answer.status_code}")
    assert not server_errors, "\n".join(server_errors)
