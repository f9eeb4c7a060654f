"""Every error the API returns has one shape: ``{"error": {"code", "message", "problems"?}}``.

A person reading it can act on ``message``; a program branches on ``code``. No traceback ever
leaves the server: an unexpected failure is logged and answered with a plain 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dripflow.core.errors import UserError

__all__ = ["ApiError", "ErrorBody", "error_responses", "install_error_handlers"]

_log = logging.getLogger("dripflow.api")


class Problem(BaseModel):
    """One thing wrong with a request: ``where`` (a field path) or ``index`` (an event), and what."""

    model_config = ConfigDict(extra="allow")

    message: str
    where: str | None = None
    index: int | None = None


class ErrorDetail(BaseModel):
    code: str = Field(
        description="For programs: `unauthorized`, `forbidden`, `not_found`, `invalid_request`, ..."
    )
    message: str = Field(description="For people: what is wrong and what to do about it.")
    problems: list[Problem] = Field(
        default_factory=list, description="Present when the request has several things wrong."
    )


class ErrorBody(BaseModel):
    """The body of every error the API answers."""

    error: ErrorDetail


_MEANINGS = {
    400: "The body cannot be read: send JSON in UTF-8.",
    401: "No API key, or an unknown or revoked one.",
    403: "The key's role does not allow this.",
    404: "Nothing by that name in the key's workspace.",
    413: "Too much in one request.",
    422: "The request is not valid; `problems` says where, when there are several.",
    502: "A service this request needs (such as the provider's) did not answer; try again.",
    503: "Not ready: the database does not answer.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: these statuses answer an :class:`ErrorBody`."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": _MEANINGS[status]} for status in statuses
    }
    if 401 in responses:
        responses[401]["headers"] = {
            "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
        }
    return responses


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = problems
        self.headers = headers  # instead of the default (a 401's `WWW-Authenticate: Bearer`)


def _body(code: str, message: str, problems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if problems:
        error["problems"] = problems
    return {"error": error}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = exc.headers or ({"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)
        return JSONResponse(_body(exc.code, exc.message, exc.problems), exc.status, headers=headers)

    @app.exception_handler(UserError)
    async def user_error(_request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse(_body("invalid", str(exc)), 422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(part) for part in item.get("loc", ())), "message": item.get("msg", "")}
            for item in exc.errors()
        ]
        return JSONResponse(_body("invalid_request", "the request is not valid; see problems", problems), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(_body(code, str(exc.detail)), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unexpected error", exc_info=exc)
        return JSONResponse(_body("internal", "an unexpected error occurred; it has been logged"), 500)
