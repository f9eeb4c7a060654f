"""The workspace file over HTTP (SPEC §2, X4, §10 ``validate`` and ``apply``):
``POST /v1/workspace/validate`` and ``PUT /v1/workspace``, both taking the YAML text as the body.

Problems are the validator's, as ``dripflow validate`` prints them, one ``{line, key, message}``
each. The file must describe the key's own workspace: its ``workspace.id`` (or the id its name
gives) is checked against the key, so no key can write another workspace.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from dripflow.api.deps import ClockDep, EngineDep, admin, refuse_nul, writer
from dripflow.api.errors import ApiError, error_responses
from dripflow.api.routes.shared import actor
from dripflow.api.schemas import WorkspaceChanges, WorkspaceProblem, WorkspaceValidation
from dripflow.core.model import Workspace as WorkspaceDef
from dripflow.core.validate import check_workspace_text
from dripflow.core.yamlsource import parse_yaml
from dripflow.engine.broadcast_admin import api_broadcast_problems
from dripflow.engine.operator import apply_live
from dripflow.store.database import session_factory, transaction
from dripflow.store.workspaces import ApplyReport

__all__ = ["MAX_BYTES", "router"]

MAX_BYTES = 2 * 1024 * 1024

router = APIRouter(
    prefix="/v1",
    tags=["workspace"],
    responses=error_responses(401, 403, 422),
    dependencies=[Depends(refuse_nul)],
)

_YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The workspace file (SPEC §2), as YAML text.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


async def _text(request: Request) -> str:
    """The body as UTF-8 text, at most MAX_BYTES of it (any content type: JSON is YAML too)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise ApiError(413, "too_large", f"a workspace file may be at most {MAX_BYTES // 1024} KiB")
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_request", "the body is not UTF-8 text") from None


YamlText = Annotated[str, Depends(_text)]


@router.post(
    "/workspace/validate",
    response_model=WorkspaceValidation,
    responses=error_responses(400, 413),
    openapi_extra=_YAML_BODY,
)
def validate(text: YamlText, credential: writer, engine: EngineDep, clock: ClockDep) -> WorkspaceValidation:
    """Check a workspace file and change nothing (X4): every problem with its line, and, for a
    valid file, what `PUT /v1/workspace` would change."""
    model, problems = _check(engine, credential.workspace_id, text)
    if model is None:
        return WorkspaceValidation(valid=False, problems=problems, changes=None)
    with session_factory(engine)() as session:
        try:
            changes = _changes(apply_live(session, model, clock, actor(credential)))
        finally:
            session.rollback()  # a rehearsal: nothing is kept
    return WorkspaceValidation(valid=True, problems=[], changes=changes)


@router.put(
    "/workspace",
    response_model=WorkspaceChanges,
    responses=error_responses(400, 413),
    openapi_extra=_YAML_BODY,
)
def put(text: YamlText, credential: admin, engine: EngineDep, clock: ClockDep) -> WorkspaceChanges:
    """Validate and apply in one transaction (`dripflow apply`): all of it or, with any problem,
    none (422 with the problems). Live sequences change as by `admin.sequence.update` (S7, T9); a
    sequence no longer in the file is archived; the same file again writes nothing."""
    model, problems = _check(engine, credential.workspace_id, text)
    if model is None:
        count = len(problems)
        raise ApiError(
            422,
            "invalid_workspace",
            f"the workspace file has {count} problem{'s' if count != 1 else ''}; nothing was applied",
            [problem.model_dump() for problem in problems],
        )
    with transaction(engine) as session:
        return _changes(apply_live(session, model, clock, actor(credential)))


def _check(
    engine: EngineDep, workspace_id: str, text: str
) -> tuple[WorkspaceDef | None, list[WorkspaceProblem]]:
    """The file's model, or None and its problems: the validator's, that it is another workspace,
    and what it would break of the broadcasts made through the API."""
    model, found = check_workspace_text(text, "workspace.yaml")
    problems = [WorkspaceProblem(line=item.line, key=_key(item.path), message=item.message) for item in found]
    if model is None:
        return None, problems
    source = parse_yaml(text)
    if model.workspace.id != workspace_id:
        line = source.line_of(("workspace", "id")) if source.data is not None else 1
        message = f"'{model.workspace.id}' is not this API key's workspace ('{workspace_id}')"
        return None, [WorkspaceProblem(line=line, key="workspace.id", message=message)]
    with transaction(engine) as session:
        clashes = api_broadcast_problems(session, model)
    for key, index, message in clashes:
        at = source.line_of(("broadcasts", index, "id")) if index is not None else None
        problems.append(WorkspaceProblem(line=at, key=key, message=message))
    return (None, problems) if problems else (model, [])


def _key(path: str) -> str:
    return "" if path == "(top level)" else path


def _changes(report: ApplyReport) -> WorkspaceChanges:
    return WorkspaceChanges(
        workspace=report.workspace_id,
        changed=report.changed,
        settings_changed=report.workspace_changed,
        sequences_created=list(report.sequences_created),
        sequences_versioned=[sequence_id for sequence_id, _version in report.sequences_versioned],
        sequences_archived=list(report.sequences_archived),
        lines=report.lines(),
    )
