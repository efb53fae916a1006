"""Helpers shared by the console's tests: signing in with the Flask client, form tokens."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_TOKEN_INPUT = re.compile(r'name="form_token" value="([^"]+)"')


def form_csrf(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page carries a csrf_token field"
    return match.group(1)


def form_token(html: str) -> str:
    match = FORM_TOKEN_INPUT.search(html)
    assert match, "the form carries a form_token field"
    return match.group(1)


def sign_in(client: FlaskClient, key: str, **environ: Any) -> Any:
    page = client.get("/console/login", **environ)
    return client.post(
        "/console/login", data={"api_key": key, "csrf_token": form_csrf(page.text)}, **environ
    )


def session_csrf(client: FlaskClient) -> str:
    return form_csrf(client.get("/console/").text)
