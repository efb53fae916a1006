"""The OpenAPI document as client generators read it: readable unique operationIds, the
statuses each endpoint can answer and no other (no 404 where no path parameter can miss),
the headers answers carry, the Idempotency-Key's pattern; and a client generated with
openapi-python-client that makes a real award against a running server."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.webhooks.endpoints import SUBSCRIBABLE_EVENTS
from tests.conftest import TenantKeys, WorkerProcess

pytestmark = pytest.mark.slow

# Upload endpoints take raw CSV or NDJSON bodies, a media type the generator skips.
RAW_UPLOADS = {"/api/v1/gamify/points/award-bulk", "/api/v1/gamify/actions/bulk"}


@pytest.fixture(scope="module")
def spec(flask_app: Any) -> dict[str, Any]:
    return dict(flask_app.test_client().get("/openapi.json").json)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


def test_operation_ids_are_the_views_names_and_unique(spec: dict[str, Any]) -> None:
    ids = Counter(operation["operationId"] for _, _, operation in operations(spec))
    assert [name for name, count in ids.items() if count > 1] == []
    by_path = {(path, method): op["operationId"] for path, method, op in operations(spec)}
    assert by_path["/api/v1/gamify/points/award", "post"] == "award"
    assert by_path["/api/v1/gamify/admin/webhooks", "post"] == "create_webhook"


def test_only_endpoints_with_path_parameters_document_the_routing_404(
    spec: dict[str, Any],
) -> None:
    """Their own 404s (a badge named in the body that does not exist) stay documented."""
    for path, method, operation in operations(spec):
        missing = operation["responses"].get("404", {}).get("description", "")
        if "{" not in path:
            assert "not_found" not in missing.removeprefix("Error: ").split(", "), (method, path)
    award = spec["paths"]["/api/v1/gamify/points/award"]["post"]
    assert "RATE_LIMIT_PARTICIPANT_EXCEEDED" in award["responses"]["429"]["description"]
    assert set(award["responses"]["429"]["headers"]) >= {"Retry-After", "RateLimit-Remaining"}
    assert set(award["responses"]["202"]["headers"]) >= {"Location", "Preference-Applied"}
    [key] = [p for p in award["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["pattern"] == "^[A-Za-z0-9_\\-:.]{1,255}$"
    readyz = spec["paths"]["/readyz"]["get"]
    assert "X-Request-ID" in readyz["responses"]["200"]["headers"]


def test_every_event_a_receiver_can_get_is_in_the_webhooks_section(spec: dict[str, Any]) -> None:
    assert set(spec["webhooks"]) == {*SUBSCRIBABLE_EVENTS, "webhook.test"}
    claimed = spec["webhooks"]["reward.reward_claimed"]["post"]
    envelope = claimed["requestBody"]["content"]["application/json"]["schema"]
    assert envelope["properties"]["type"] == {"const": "reward.reward_claimed"}
    data = spec["components"]["schemas"]["RewardClaimed"]
    assert {"claim_id", "reward_id", "code_value", "claimed_at"} <= set(data["required"])


def test_every_request_example_is_accepted_as_the_api_parses_bodies(flask_app: Any) -> None:
    """Examples in the document are requests the API takes (strict JSON, as it parses)."""
    bodies = {
        doc.body
        for view in flask_app.view_functions.values()
        if (doc := getattr(view, "endpoint_doc", None)) is not None and doc.body is not None
    }
    checked = 0
    for model in bodies:
        for example in model.model_json_schema().get("examples", []):
            model.model_validate_json(json.dumps(example), strict=True)
            checked += 1
    assert checked >= 6


def test_jobs_document_their_progress(spec: dict[str, Any]) -> None:
    progress = spec["components"]["schemas"]["OperationView"]["properties"]["progress"]
    names = {ref["$ref"].rsplit("/", 1)[-1] for ref in progress["anyOf"] if "$ref" in ref}
    assert names == {"BulkProgress", "ActionBulkProgress", "GenerateProgress"}
    assert spec["components"]["schemas"]["BulkProgress"]["required"] == ["total"]


def test_a_generated_client_awards_points_against_the_running_server(
    spec: dict[str, Any],
    live_api: str,
    worker: WorkerProcess,
    tenant: TenantKeys,
    tmp_path: Path,
    client: FlaskClient,
) -> None:
    spec_path = tmp_path / "openapi.json"
    spec_path.write_text(client.get("/openapi.json").text)
    venv_bin = str(Path(sys.executable).parent)
    generated = subprocess.run(
        [
            *(f"{venv_bin}/openapi-python-client", "generate", "--path", str(spec_path)),
            *("--meta", "none", "--output-path", str(tmp_path / "rewards_client")),
        ],
        env={**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    skipped = {
        line.split(" within ")[0].split(" ", 3)[-1]
        for line in generated.stdout.splitlines()
        if line.startswith("WARNING parsing") and "will not be generated" in line
    }
    assert skipped <= RAW_UPLOADS, generated.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module("rewards_client")
        award = importlib.import_module("rewards_client.api.points.award")
        models = importlib.import_module("rewards_client.models")
        with package.Client(base_url=live_api, headers=tenant.participant()) as api:
            answered = award.sync_detailed(
                client=api,
                body=models.AwardRequest(participant_id="gen", amount=7),
                idempotency_key="generated-client-1",
            )
        assert answered.status_code == 200, answered.content
        assert answered.parsed.new_balance == 7
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("rewards_client")]:
            del sys.modules[name]
