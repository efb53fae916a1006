"""The console's start page: who is signed in, to which tenant and environment, until when.
(The operational charts are added by their own page module.)"""

from __future__ import annotations

from flask import Response

from api.console import bp
from api.console.pages import render_page, signed_in


@bp.get("/")
def overview() -> Response:
    return render_page("console/overview.html", title="Overview", sign_in=signed_in())
