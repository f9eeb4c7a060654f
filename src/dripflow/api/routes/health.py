"""``/healthz`` (the process answers) and ``/readyz`` (and its database does)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from dripflow.api.deps import EngineDep
from dripflow.api.errors import error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses=error_responses(503))
def readyz(engine: EngineDep) -> dict[str, str] | JSONResponse:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        body = {"error": {"code": "not_ready", "message": "the database does not answer"}}
        return JSONResponse(body, status_code=503)
    return {"status": "ready"}
