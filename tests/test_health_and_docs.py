from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient


def test_livez_answers_ok(client: FlaskClient) -> None:
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_reports_database_and_broker(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_the_unreachable_database(make_app: Any) -> None:
    broken = make_app(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none", db_connect_timeout_seconds=1
    )
    response = broken.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"].startswith("unavailable")
    assert response.json["checks"]["broker"] == "ok"


def test_readyz_stays_ready_without_redis_and_names_it_degraded(make_app: Any) -> None:
    broken = make_app(redis_url="redis://127.0.0.1:1/0")
    response = broken.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json == {
        "status": "degraded",
        "checks": {"database": "ok", "broker": "unavailable: ConnectionError"},
    }


def test_livez_answers_ok_with_neither_database_nor_redis_reachable(make_app: Any) -> None:
    broken = make_app(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
        db_connect_timeout_seconds=1,
        redis_url="redis://127.0.0.1:1/0",
    )
    client = broken.test_client()
    assert client.get("/readyz").status_code == 503
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_openapi_document_is_3_1_and_lists_the_declared_endpoints(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    assert "/api/v1/gamify/operations/{operation_id}" in spec["paths"]
    assert "/readyz" in spec["paths"]
    assert "ErrorBody" in spec["components"]["schemas"]


def test_docs_page_serves_swagger_ui_with_local_assets(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert "/openapi.json" in page.text
    with client.get("/docs/assets/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200


def test_unknown_path_answers_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/gamify/nowhere")
    assert response.status_code == 404
    assert response.json == {
        "code": "not_found",
        "type": "not_found",
        "detail": "Not found",
        "status": 404,
    }


def test_wrong_method_answers_json_405(client: FlaskClient) -> None:
    response = client.delete("/livez")
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
