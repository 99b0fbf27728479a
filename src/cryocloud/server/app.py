"""The FastAPI application: shared state, who is calling, errors as JSON with the CLI's message and hint."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cryocloud.errors import CryocloudError, JobFolderBusy, JobNotFound
from cryocloud.server.auth import AuthError
from cryocloud.server.state import State
from cryocloud.settings import Settings

MAX_BODY = 1 << 20  # bytes: a job's request is a few KB; more is refused with 413 before it is read
API = "/api/v1"


def _status(e: CryocloudError) -> int:
    from cryocloud.app.facility import PathRefused

    for kind, status in ((JobNotFound, 404), (PathRefused, 403), (JobFolderBusy, 409)):
        if isinstance(e, kind):
            return status
    return 400


class BodyLimit:
    """Refuse a body over MAX_BODY with 413, whether it declares its length or streams it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        too_big = JSONResponse({"message": "the request body is too large",
                                "hint": f"at most {MAX_BODY} bytes: send a job, not its data"}, status_code=413)
        if declared.isdigit() and int(declared) > MAX_BODY:
            await too_big(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                raise _TooBig
            return message

        try:
            await self.app(scope, counted, send)
        except _TooBig:
            await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


def create_app(settings: Settings) -> FastAPI:
    from cryocloud.server import api, pages, sessions

    app = FastAPI(title="cryocloud", version="1", openapi_url=None, docs_url=None,
                  redoc_url=None, description="Submit cryo-EM jobs, follow them, and see what they cost. "
                  "Every call needs `Authorization: Bearer TOKEN` (`cryocloud tokens create NAME`).")
    app.state.cryocloud = State(settings)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, e: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else {"Retry-After": str(e.retry_after)}
        return JSONResponse({"message": e.message, "hint": e.hint, "kind": "AuthError"}, e.status, headers)

    @app.exception_handler(CryocloudError)
    async def _cryocloud(request: Request, e: CryocloudError) -> JSONResponse:
        body: dict[str, Any] = {"message": e.message, "hint": e.hint, "kind": type(e).__name__,
                                "in_job": bool(getattr(e, "in_job", False))}
        return JSONResponse(body, _status(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"message": f"malformed request: {where}: {first.get('msg', 'invalid')}",
                             "hint": f"see the API's schema at {API}/openapi.json", "kind": "BadRequest"}, 422)

    app.include_router(api.router, prefix=API)
    app.include_router(sessions.api_router, prefix=API)
    app.include_router(pages.router)
    app.include_router(sessions.router)
    app.add_middleware(BodyLimit)
    return app
