"""Interactive API documentation served with no external assets (works offline, ADR-094): Swagger
UI for the customer API at `/docs` and the operator API at `/admin/docs`, its script and style from
the `fastapi-offline` wheel under `/docs-assets`. No ReDoc page: its footer loads a logo from a
CDN whatever its options."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def docs_assets() -> StaticFiles:
    """Swagger UI's and ReDoc's files, shipped in a wheel (no CDN)."""
    return StaticFiles(directory=_ASSETS_DIR)


def docs_router(title: str) -> APIRouter:
    """`/docs` and `/admin/docs`, outside both OpenAPI documents."""
    router = APIRouter(include_in_schema=False)

    def swagger(openapi_url: str, page_title: str) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=page_title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    @router.get("/docs")
    async def customer_docs() -> HTMLResponse:
        return swagger("/openapi.json", f"{title} - docs")

    @router.get("/admin/docs")
    async def operator_docs() -> HTMLResponse:
        return swagger("/admin/openapi.json", f"{title} (operator) - docs")

    return router
