"""`/docs`: the HTTP API's Swagger UI, its scripts and styles served by `qa serve` itself, not a CDN.

FastAPI's own `/docs` page loads Swagger UI from cdn.jsdelivr.net and its icon from fastapi.tiangolo.com:
offline (qa's normal case) the page stayed blank. The files come from the fastapi-offline package (MIT;
Swagger UI 5 is Apache-2.0), which ships them as they are on the CDN. ReDoc is not served.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

__all__ = ["ASSETS", "add_docs"]

ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
ASSETS_PATH = "/docs/assets"


def add_docs(app: Any, docs_url: str = "/docs") -> None:
    """Serve Swagger UI for `app`'s OpenAPI schema at `docs_url`, its assets under /docs/assets/."""
    from fastapi import Request
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse

    static = files("fastapi_offline") / "static"

    async def page(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} - HTTP API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css", swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            # No online validator: Swagger UI would send the schema's URL to validator.swagger.io.
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None})

    def asset(name: str) -> Any:
        async def send(request: Request) -> FileResponse:
            return FileResponse(str(static / name), media_type=ASSETS[name],
                                headers={"Cache-Control": "public, max-age=86400"})
        return send

    app.add_route(docs_url, page, include_in_schema=False)
    for name in ASSETS:
        app.add_route(f"{ASSETS_PATH}/{name}", asset(name), include_in_schema=False)
