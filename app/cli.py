"""The `rewards` command: operators' and developers' entry point.

Machine-readable output (JSON) goes to stdout; logs and errors go to stderr. The
commands that run servers import the HTTP and worker packages lazily, so the
administrative commands stay light.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.config import MULTIPROC_DIR_VARIABLE, Settings, SettingsError, load_settings
from app.db import make_engine, make_session_factory
from app.errors import DomainError
from app.models import Environment, Operation
from app.tenancy import PUBLISHABLE_SCOPE, KeyStyle


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    engine = make_engine(settings, pool_size=1)
    try:
        with make_session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> None:
    from app.migrate import upgrade_database

    upgrade_database(settings.require_database_url())
    _print_json({"migrated": True})


def cmd_tenant_create(settings: Settings, args: argparse.Namespace) -> None:
    from app.tenancy import create_tenant

    with _transaction(settings) as session:
        tenant = create_tenant(session, args.name)
        created = {"tenant_id": str(tenant.id), "name": tenant.name}
    # Printed after the commit: an id on stdout means the tenant exists.
    _print_json(created)


def _set_disabled(disabled: bool) -> Callable[[Settings, argparse.Namespace], None]:
    def command(settings: Settings, args: argparse.Namespace) -> None:
        from app.tenancy import set_tenant_disabled

        with _transaction(settings) as session:
            tenant = set_tenant_disabled(session, args.tenant_id, disabled)
            changed = {"tenant_id": str(tenant.id), "disabled": tenant.is_disabled}
        _print_json(changed)

    return command


def cmd_tenant_limits(settings: Settings, args: argparse.Namespace) -> None:
    from app.tenancy import set_tenant_limits

    rate, burst = (None, None) if args.reset else (args.rate, args.burst)
    with _transaction(settings) as session:
        tenant = set_tenant_limits(session, args.tenant_id, rate, burst)
        changed = {
            "tenant_id": str(tenant.id),
            "participant_write_rate": tenant.participant_write_rate,
            "participant_write_burst": tenant.participant_write_burst,
        }
    _print_json(changed)


def cmd_key_create(settings: Settings, args: argparse.Namespace) -> None:
    from app.audit import record_audit
    from app.tenancy import create_api_key

    scopes = [*(args.scope or []), *([PUBLISHABLE_SCOPE] if args.publishable else [])]
    # A publishable key exists only in the blocks style (pk_...): asking for one implies it.
    implied = KeyStyle.BLOCKS if PUBLISHABLE_SCOPE in scopes else KeyStyle.BQ
    style = KeyStyle(args.style) if args.style else implied
    with _transaction(settings) as session:
        issued = create_api_key(
            session, args.tenant, Environment(args.env), scopes, args.expires_at, style
        )
        record_audit(
            session,
            tenant_id=args.tenant,
            env=issued.env,
            actor_key_id=None,
            action="api_key.created",
            target_id=issued.key_id,
            details={"scopes": issued.scopes},
        )
    _print_json(
        {
            "key": issued.key,
            "key_id": str(issued.key_id),
            "env": issued.env,
            "scopes": issued.scopes,
            "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
        }
    )


def cmd_key_revoke(settings: Settings, args: argparse.Namespace) -> None:
    from app.audit import record_audit
    from app.tenancy import revoke_api_key

    with _transaction(settings) as session:
        key = revoke_api_key(session, args.key_id)
        record_audit(
            session,
            tenant_id=key.tenant_id,
            env=key.env,
            actor_key_id=None,
            action="api_key.revoked",
            target_id=key.id,
        )
    _print_json({"key_id": str(args.key_id), "revoked": True})


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> None:
    from app.points.verify import verify_ledger

    with _transaction(settings) as session:
        report = verify_ledger(session, args.tenant)
    _print_json(report.as_json())
    if not report.ok:
        raise DomainError("ledger_violations", "balances disagree with the ledger", 1)


def cmd_operations_failed(settings: Settings, args: argparse.Namespace) -> None:
    from app.operation_failures import failed_operations, failure_summary

    with _transaction(settings) as session:
        listed = [failure_summary(failed) for failed in failed_operations(session, args.limit)]
    for summary in listed:  # one JSON object per line
        _print_json(summary)


def cmd_operations_retry(settings: Settings, args: argparse.Namespace) -> None:
    from app.operation_failures import requeue_failed_operation

    with _transaction(settings) as session:
        operation = requeue_failed_operation(session, args.operation_id)
    # Printed after the commit: the operation is queued whether or not the publish below
    # goes through; if it does not, the sweeper republishes it.
    _print_json(
        {
            "operation_id": str(operation.id),
            "status": operation.status,
            "published": _publish_requeued(settings, operation),
        }
    )


def _publish_requeued(settings: Settings, operation: Operation) -> bool:
    from app.infra.redis_client import make_redis
    from workers.celery_app import create_celery
    from workers.publish import publish_accepted

    celery = create_celery(settings)
    redis_client = make_redis(settings)
    try:
        publish_accepted(celery, redis_client, settings.redis_key_prefix, [operation])
    except Exception as exc:
        sys.stderr.write(
            f"rewards: not published ({type(exc).__name__}); the sweeper republishes it "
            f"within OPERATION_STALL_SECONDS={settings.operation_stall_seconds:g}\n"
        )
        return False
    finally:
        redis_client.close()
        celery.close()
    return True


def _count_in_files(role: str) -> None:
    """Metrics of a role's processes (gunicorn's, Celery's prefork children) go to files
    one exposition reads (app/metrics.py): a directory of this role's own, emptied (the
    samples of an earlier start would add up with this one's), set before prometheus_client
    is imported, which it is only by the lazy imports below."""
    base = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if base:
        directory = Path(base) / role
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix=f"rewards-metrics-{role}-"))
        atexit.register(_remove_if_still_ours, directory, os.getpid())
    os.environ[MULTIPROC_DIR_VARIABLE] = str(directory)


def _remove_if_still_ours(directory: Path, owner_pid: int) -> None:
    """At exit, the metrics directory goes with the process that made it, not with one it
    forked: a gunicorn worker that exits (a restart, max requests) runs the exit handlers
    it inherited, and must not take the directory its siblings still write to."""
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


def cmd_secrets_reseal(settings: Settings, args: argparse.Namespace) -> None:
    from app.webhooks.endpoints import reseal_secrets
    from app.webhooks.secret_box import SecretBox, SecretKeyError

    box = SecretBox.from_settings(settings)
    try:
        with _transaction(settings) as session:
            changed = reseal_secrets(session, box)
    except SecretKeyError as exc:
        raise DomainError("secret_key_mismatch", f"{exc}; nothing was changed", 1) from None
    _print_json({"endpoints_resealed": changed, "sealed": box.seals})


def cmd_serve(settings: Settings, args: argparse.Namespace) -> None:
    _count_in_files("web")
    from api.server import serve

    processes = settings.web_concurrency if args.workers is None else args.workers
    serve(settings, args.host, args.port, processes, args.connections)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> None:
    _count_in_files("worker")
    from workers.main import run_worker

    run_worker(settings, args.concurrency, beat=not args.no_beat, node_name=args.name)


def cmd_standalone(settings: Settings, args: argparse.Namespace) -> None:
    from app.standalone import run_standalone

    run_standalone(settings, host=args.host, port=args.port)


def _version() -> str:
    try:
        return metadata.version("rewards-engine")
    except metadata.PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewards", description="rewards-engine")
    parser.add_argument("--version", action="version", version=f"rewards-engine {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(run=cmd_db_upgrade)

    tenant = commands.add_parser("tenant", help="tenants").add_subparsers(required=True)
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument("--name", required=True)
    create.set_defaults(run=cmd_tenant_create)
    for verb, disabled in (("disable", True), ("enable", False)):
        toggle = tenant.add_parser(verb, help=f"{verb} a tenant")
        toggle.add_argument("tenant_id", type=_uuid)
        toggle.set_defaults(run=_set_disabled(disabled))

    limits = tenant.add_parser(
        "limits", help="override the per-participant write cap (writes per second, burst)"
    )
    limits.add_argument("tenant_id", type=_uuid)
    limits.add_argument("--rate", type=float)
    limits.add_argument("--burst", type=int)
    limits.add_argument("--reset", action="store_true", help="back to the service defaults")
    limits.set_defaults(run=cmd_tenant_limits)

    key = commands.add_parser("key", help="API keys").add_subparsers(required=True)
    key_create = key.add_parser("create", help="create an API key (printed once)")
    key_create.add_argument("--tenant", required=True, type=_uuid)
    key_create.add_argument("--env", choices=[e.value for e in Environment], default="live")
    key_create.add_argument(
        "--scope", action="append", help="admin, gamify:admin or publishable (see --publishable)"
    )
    key_create.add_argument(
        "--style",
        choices=[style.value for style in KeyStyle],
        help="bq (default): bq_live_/bq_test_; blocks: sk_live_/sk_test_ (pk_ if publishable)",
    )
    key_create.add_argument(
        "--publishable",
        action="store_true",
        help="a publishable key (scope publishable, never admin): pk_live_/pk_test_, "
        "blocks style implied",
    )
    key_create.add_argument("--expires-at", type=_timestamp)
    key_create.set_defaults(run=cmd_key_create)
    key_revoke = key.add_parser("revoke", help="revoke an API key")
    key_revoke.add_argument("key_id", type=_uuid)
    key_revoke.set_defaults(run=cmd_key_revoke)

    ledger = commands.add_parser("ledger", help="points ledger").add_subparsers(required=True)
    verify = ledger.add_parser("verify", help="check balances against the ledger (JSON)")
    verify.add_argument("--tenant", type=_uuid, help="only this tenant's participants")
    verify.set_defaults(run=cmd_ledger_verify)

    operations = commands.add_parser(
        "operations", help="accepted writes set aside after failing unexpectedly"
    ).add_subparsers(required=True)
    failed = operations.add_parser(
        "failed", help="list them, oldest first (one JSON object per line)"
    )
    failed.add_argument("--limit", type=int, default=100)
    failed.set_defaults(run=cmd_operations_failed)
    retry = operations.add_parser("retry", help="queue one again and publish it")
    retry.add_argument("operation_id", type=_uuid)
    retry.set_defaults(run=cmd_operations_retry)

    secrets_commands = commands.add_parser(
        "secrets", help="webhook signing secrets at rest"
    ).add_subparsers(required=True)
    secrets_commands.add_parser(
        "reseal", help="seal every stored secret with SECRET_KEY's first key (JSON)"
    ).set_defaults(run=cmd_secrets_reseal)

    serve = commands.add_parser("serve", help="run the API under gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, help="web processes (default: WEB_CONCURRENCY, else 2)"
    )
    serve.add_argument(
        "--connections", type=int, default=1000, help="open client connections per process"
    )
    serve.set_defaults(run=cmd_serve)

    worker = commands.add_parser("worker", help="run a Celery worker for all queues")
    worker.add_argument("--concurrency", type=int)
    worker.add_argument("--no-beat", action="store_true", help="do not run periodic tasks")
    worker.add_argument("--name", help="node name, unique per host (default: rewards-<pid>@host)")
    worker.set_defaults(run=cmd_worker)

    standalone = commands.add_parser(
        "standalone", help="embedded PostgreSQL and Redis, the API and a worker"
    )
    standalone.add_argument("--host", default="127.0.0.1")
    standalone.add_argument("--port", type=int, default=8000)
    standalone.set_defaults(run=cmd_standalone)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        args.run(settings, args)
    except SettingsError as exc:
        sys.stderr.write(f"rewards: {exc}\n")
        return 2
    except DomainError as exc:
        sys.stderr.write(f"rewards: {exc.code}: {exc.detail}\n")
        return 1
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        sys.stderr.write(f"rewards: database unavailable: {reason}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
