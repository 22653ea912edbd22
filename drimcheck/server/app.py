"""The application factory: `create_app(db_url, data_dir)` -> FastAPI (API at /api, web pages at /).

Migrations are applied when the app is created (`alembic upgrade head`), so `drimcheck serve` with no option
gives a working instance on a SQLite file in the data directory.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from drimcheck import __version__
from drimcheck.server import db

DEFAULT_DATA_DIR = Path("drimcheck-data")
MAX_REQUEST_BYTES = 256 * 1024 * 1024 + 1024 * 1024  # the largest upload (a package) plus its envelope


class BodyLimit:
    """Pure ASGI middleware: no request body beyond `limit` bytes, whatever the route (413)."""

    def __init__(self, app, limit: int = MAX_REQUEST_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                response = JSONResponse({"detail": f"envoi trop volumineux : au plus {self.limit} octets"}, 413)
                return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"envoi trop volumineux : au plus {self.limit} octets")
            return message

        return await self.app(scope, limited_receive, send)


def create_app(db_url: str | None = None, data_dir: str | Path | None = None) -> FastAPI:
    data = Path(data_dir or DEFAULT_DATA_DIR).resolve()
    data.mkdir(parents=True, exist_ok=True)
    url = db_url or db.default_url(data)
    db.upgrade(url)
    app = FastAPI(title="drimcheck — serveur de campagnes", version=__version__, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json")
    app.state.db_url = url
    app.state.data_dir = data
    app.state.sessions = db.session_factory(url, str(data))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:5])
        return JSONResponse({"detail": f"requête invalide : {where}"}, status_code=422)

    from drimcheck.server import api

    app.include_router(api.router, prefix="/api")
    if importlib.util.find_spec("drimcheck.server.web") is not None:  # the HTML pages (helper srvweb)
        web = importlib.import_module("drimcheck.server.web")
        if hasattr(web, "install"):
            web.install(app)
        else:
            app.include_router(web.router)
    app.add_middleware(BodyLimit)
    return app
