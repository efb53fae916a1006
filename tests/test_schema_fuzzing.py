"""Property-based fuzzing of the live API from its own OpenAPI document (schemathesis).

A real server (gunicorn, as deployed) with a real worker; every documented operation is
called with generated inputs and must answer without a 5xx and as the schema says.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TenantKeys

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]


@pytest.fixture(scope="session")
def fuzz_tenant(make_session_tenant: Any) -> TenantKeys:
    return make_session_tenant("fuzz")


def test_every_operation_answers_as_documented_and_never_5xx(
    fuzz_tenant: TenantKeys, live_api: str, tmp_path: Path
) -> None:
    """schemathesis's own CLI, bounded: a few examples per operation, all its checks."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{live_api}/openapi.json",
            "--header",
            f"X-API-Key: {fuzz_tenant.admin_key}",
            "--header",
            "Prefer: respond-async",
            "--checks",
            "all",
            # Excluded on purpose: positive_data_acceptance counts business refusals of
            # schema-valid input (insufficient_points, an unreachable webhook URL, ...) as
            # failures; use_after_free expects DELETE to erase, where rewards soft-delete
            # (the admin API keeps showing them with is_active false, as documented).
            "--exclude-checks",
            "positive_data_acceptance,use_after_free",
            # Generation-efficiency warnings about binary bodies with patterned headers,
            # not findings about the API.
            "--suppress-health-check",
            "filter_too_much,too_slow",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "--max-redirects",
            "0",
            # One worker: with two threads, CPython 3.11's ast module (which hypothesis
            # reaches through inspect) can fail with "AST constructor recursion depth
            # mismatch", a thread-safety bug of the interpreter, not a finding.
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    report = tmp_path / "schemathesis.txt"
    report.write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"see {report}\n" + run.stdout[-12000:]
