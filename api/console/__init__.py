"""The admin console: server-rendered pages at /console over the same services as the API.

How to add a page (see api/console/audit_log.py for a list, api/console/rewards.py for
forms):

- **Declare a view** on the blueprint `bp` of this package, in a module of its own, and
  add the module to `PAGE_MODULES` below::

      from api.console import bp
      from api.console.pages import render_page, signed_in

      @bp.get("/things")
      def things() -> str:
          principal = signed_in().principal       # tenant_id, env, key_id of the sign-in
          with runtime().session_factory() as session:
              rows = list_things(session, principal.tenant_id, principal.env)  # app/ query
          return render_page("console/things.html", title="Things", rows=rows)

  Give its nav entry a line in `pages.NAV` (the entry is shown once its endpoint exists).
- **Sign-in is required** for every console route except the sign-in page and the static
  files: the blueprint's `before_request` (api/console/signin.py) loads the session from
  the `rewards_console` cookie and re-checks it and its key on every request; no live
  session -> 303 to /console/login (an htmx request gets 401 + HX-Redirect). Inside a view
  `signed_in()` is the `ConsoleSignIn` (session id, CSRF token, principal), and
  `api.auth.current_principal()` works too (so API helpers that read it can be reused).
- **CSRF is checked** for every POST/PUT/PATCH/DELETE to /console before the view runs: the
  form field `csrf_token` (put `{{ csrf_field() }}` in every form) or the `X-CSRF-Token`
  header (htmx sends it: the layout sets it on `<body hx-headers=...>`). Missing or wrong ->
  400 page, nothing done. Nothing to do in the view.
- **Render with the layout**: templates extend `console/layout.html` and fill
  `{% block content %}`; `render_page(template, title=..., status=200, **context)` sets the
  `<title>` and marks the nav entry. Form controls come from `console/macros.html`
  (`field`, `select`, `checkbox`, `textarea`): each has its `<label for>` and, given
  errors, its message tied with `aria-describedby`.
- **Show validation errors beside fields**: read the form with `forms.FormReader`
  (typed conversions, each failure kept for its field), validate into the API's own
  pydantic model with `reader.validate(Model, values)`, and on `FormInvalid` render the
  form again with `exc.errors` (a `FieldErrors`). `FieldErrors.from_error(exc)` maps a
  pydantic `ValidationError` or a `DomainError` (a 422's `errors` list, or a code named in
  `code_fields`, e.g. {"slug_taken": "slug"}) to messages per field; what names no field
  is shown at the top of the form (`errors.general`).
- **Audit every change** in the change's own transaction with `api.audit.audit_change`
  (or the API helper that already calls it): in a console request the entry's actor is
  the signed-in key and its details carry `"via": "console"` (set by the before_request).
- **Queued writes** (award, deduct, ...) go through `api.write_path.accept_write` like
  the API's; see `pages.submit_write`, which takes the form's idempotency token
  (`form_token()` in the template renders the hidden field) and returns the answer;
  audit them with `api.audit.audit_write_once` (one entry per token, however often the
  form is sent). api/console/participants.py is the example.
- **Prefer the API's own code**: a console view may call an API view function directly
  (`create_reward_definition(body=...)`: `@endpoint` returns the function as written) or a
  helper it uses, so rules, errors and audit actions cannot drift apart.
- **Uploads**: put `@accepts_upload(max_bytes)` under `@bp.post(...)` (the body limit is
  1 MiB otherwise); an htmx form with `data-progress="<progress id>"` feeds its
  `<progress>` from the upload's progress (static/console.js). `is_htmx()` tells a view
  to answer a fragment; a 4xx fragment is swapped in like a success (console.js), so
  refusals show where the answer would have.

Errors raised in a console view (DomainError, 404, 413) are rendered as HTML pages by
this blueprint's handlers, never as the API's JSON.
"""

from __future__ import annotations

import importlib

from flask import Blueprint

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# The modules that declare the console's routes, imported once by console_blueprint().
PAGE_MODULES = (
    "api.console.signin",
    "api.console.pages",
    "api.console.overview",
    "api.console.audit_log",
    "api.console.rewards",
    "api.console.participants",
    "api.console.bulk_jobs",
    "api.console.webhooks",
    "api.console.program",
)


def console_blueprint() -> Blueprint:
    """The console blueprint with every page module's routes declared on it."""
    for module in PAGE_MODULES:
        importlib.import_module(module)
    return bp
