"""What the sequence, enrollment, broadcast, workspace and report routes share: who acted (for
the audit log), the validator's problems as error details, and their error answers."""

from __future__ import annotations

from typing import Any

from dripflow.api.errors import ApiError, ErrorBody
from dripflow.core.validate import TOP, WorkspaceInvalid
from dripflow.store.apikeys import Credential

__all__ = ["CONFLICT", "actor", "invalid", "problems_of"]

# 409 is not among errors.error_responses' statuses; declared here for these routes.
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "The object is not in a state that allows this; `message` says why.",
    }
}


def actor(credential: Credential) -> str:
    """The audit log's actor for a change made with this key: its public prefix, never the secret."""
    return f"api:{credential.prefix}"


def problems_of(exc: WorkspaceInvalid, *, lines: bool = False) -> list[dict[str, Any]]:
    """The validator's problems as ``{key, message}`` (and ``line`` for a YAML text)."""
    found: list[dict[str, Any]] = []
    for problem in exc.problems:
        item: dict[str, Any] = {
            "key": "" if problem.path == TOP else problem.path,
            "message": problem.message,
        }
        if lines:
            item = {"line": problem.line, **item}
        found.append(item)
    return found


def invalid(code: str, what: str, exc: WorkspaceInvalid) -> ApiError:
    count = len(exc.problems)
    message = f"{what} is not valid ({count} problem{'s' if count != 1 else ''}); nothing was changed"
    return ApiError(422, code, message, problems_of(exc))
