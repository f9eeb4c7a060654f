"""Load and check a workspace file, reporting every problem at once as ``FILE:LINE: path: message``.

Three passes, each reporting all it finds (SPEC §2, X4): the YAML text (syntax, duplicate keys),
the structure (pydantic, with its messages rewritten for a marketer and pointed at the line of the
offending key, or of its nearest parent when the key is missing), and references (every name
resolves, ids are unique; :mod:`dripflow.core.references`). Nothing is returned unless all pass, so
nothing is ever partially applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from dripflow.core.model import Sequence, Workspace
from dripflow.core.modeltypes import describe, did_you_mean
from dripflow.core.references import check_references
from dripflow.core.salvage import inside, salvage
from dripflow.core.yamlsource import Loc, PathPart, format_path, parse_yaml

TOP = "(top level)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workspace file, located by line and key path."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class WorkspaceInvalid(Exception):
    """A workspace that cannot be used; ``problems`` lists every reason, ``str()`` one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def check_workspace_text(text: str, filename: str) -> tuple[Workspace | None, list[Problem]]:
    """The workspace in ``text`` and no problems, or ``None`` and every problem sorted by line."""
    source = parse_yaml(text)
    problems = [Problem(filename, issue.line, issue.path or TOP, issue.message) for issue in source.issues]
    if source.data is None and not problems:
        problems.append(
            Problem(filename, 1, TOP, "the file is empty: it needs at least a workspace: section")
        )
    workspace: Workspace | None = None
    if source.data is not None:
        workspace, found = check_workspace_data(source.data, filename, source.line_of)
        problems.extend(found)
    return (workspace, []) if not problems else (None, _sorted(problems))


def check_workspace_data(
    data: object, filename: str, line_of: Callable[[Loc], int] | None = None
) -> tuple[Workspace | None, list[Problem]]:
    """Like :func:`check_workspace_text` for data already parsed (the API's JSON, say).

    ``line_of`` gives the line of a key path; without it every problem is on line 0.
    """
    where = line_of or (lambda loc: 0)
    if not isinstance(data, dict):
        message = f"the file must be a mapping of sections (workspace:, sequences: …), not {describe(data)}"
        return None, [Problem(filename, where(()), TOP, message)]
    problems: list[Problem] = []
    cut: set[Loc] = set()
    try:
        workspace: Workspace | None = Workspace.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc, message = translate_error(error, data)
            problems.append(Problem(filename, where(loc), format_path(loc) or TOP, message))
        # check the references of what is sound too, so that every problem shows in one pass
        workspace, cut = salvage(data, file_loc)

    def first(loc: Loc) -> str:
        return f"on line {where(loc)}" if line_of is not None else f"at {format_path(loc)}"

    if workspace is not None:
        problems.extend(
            Problem(filename, where(loc), format_path(loc) or TOP, message)
            for loc, message in check_references(workspace, first)
            if not inside(loc, cut)
        )
    return (workspace, []) if not problems else (None, _sorted(problems))


def load_workspace_text(text: str, filename: str) -> Workspace:
    """The workspace in ``text``; raises :class:`WorkspaceInvalid` listing every problem."""
    workspace, problems = check_workspace_text(text, filename)
    if workspace is None:
        raise WorkspaceInvalid(problems)
    return workspace


def load_workspace_file(path: str | Path) -> Workspace:
    """The workspace in the file at ``path``; raises :class:`WorkspaceInvalid` (also if unreadable)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorkspaceInvalid([Problem(name, 1, TOP, "the file is not UTF-8 text")]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise WorkspaceInvalid([Problem(name, 1, TOP, f"cannot read the file: {reason}")]) from None
    return load_workspace_text(text, name)


def parse_sequence(data: Mapping[str, object], workspace: Workspace, source: str = "sequence") -> Sequence:
    """Check one sequence definition against ``workspace`` (``admin.sequence.update``, SPEC X2).

    The sequence replaces the one with the same id (or is added) and the whole workspace is checked,
    so a step removed while another sequence's condition still names it is caught too. Problems in
    the definition have paths relative to it (``steps[1].template``), on line 0.
    """
    if not isinstance(data, Mapping):
        raise WorkspaceInvalid(
            [Problem(source, 0, TOP, f"a sequence must be a mapping, not {describe(data)}")]
        )
    candidate = workspace.model_dump(mode="json")
    sequences: list[object] = candidate["sequences"]
    index = next(
        (i for i, item in enumerate(workspace.sequences) if item.id == data.get("id")), len(sequences)
    )
    sequences[index : index + 1] = [dict(data)]
    checked, problems = check_workspace_data(candidate, source)
    if checked is None:
        prefix = f"sequences[{index}]"
        relative = []
        for problem in problems:
            path = problem.path
            if path == prefix:
                path = TOP
            elif path.startswith(prefix + "."):
                path = path[len(prefix) + 1 :]
            relative.append(Problem(source, 0, path, problem.message))
        raise WorkspaceInvalid(relative)
    return checked.sequences[index]


# --------------------------------------------------------------------------------------------------
# pydantic errors in plain words

_QUOTED = re.compile(r"'([^']*)'")
_DIGITS = re.compile(r"(\d+)")
_PLAIN: dict[str, str] = {
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a mapping (key: value pairs)",
    "model_type": "must be a mapping (key: value pairs)",
    "model_attributes_type": "must be a mapping (key: value pairs)",
    "mapping_type": "must be a mapping (key: value pairs)",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "iterable_type": "must be a list",
    "none_required": "must be empty",
}


def translate_error(error: ErrorDetails, data: object) -> tuple[Loc, str]:
    """Where in the file a pydantic error is, and what it means, in words a marketer understands."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    loc = file_loc(error["loc"], data)
    value = error.get("input")
    if kind.startswith("df_"):
        if isinstance(ctx.get("at_key"), str):
            loc = (*loc, ctx["at_key"])
        return loc, str(ctx.get("message", error["msg"]))
    if kind == "missing":
        return loc, "required but missing"
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind in _PLAIN:
        return loc, f"{_PLAIN[kind]}, not {describe(value)}"
    if kind == "string_too_short":
        return loc, "must not be empty"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = _QUOTED.findall(expected) or [
            part.strip() for part in re.split(r",| or ", expected) if part.strip()
        ]
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return loc, f"must be one of {', '.join(choices)}, not {describe(value)}{hint}"
    bounds = {
        "greater_than": "more than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
    }
    if kind in bounds:
        return loc, f"must be {bounds[kind].format(**ctx)}, not {describe(value)}"
    if kind == "too_short":
        return loc, "must list at least one item"
    if kind == "recursion_loop":
        return loc, "nested too deeply"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return loc, message[:1].lower() + message[1:]


def file_loc(loc: tuple[int | str, ...], data: object) -> Loc:
    """Follow a pydantic error location through the data, dropping union tags (``@Name``)."""
    parts: list[PathPart] = []
    node: object = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]  # (two branches: mypy narrows dict and list separately)
        elif isinstance(part, str) and part.startswith("@"):
            continue
        else:
            node = None
        parts.append(part)
    return tuple(parts)


def _sorted(problems: list[Problem]) -> list[Problem]:
    """By line, then path in natural order (``steps[2]`` before ``steps[10]``), without repeats."""

    def key(problem: Problem) -> tuple[int, list[tuple[int, str]], str]:
        parts = [(int(part), "") if part.isdigit() else (-1, part) for part in _DIGITS.split(problem.path)]
        return problem.line, parts, problem.message

    return sorted(set(problems), key=key)


__all__ = [
    "Problem",
    "WorkspaceInvalid",
    "check_workspace_data",
    "check_workspace_text",
    "load_workspace_file",
    "load_workspace_text",
    "parse_sequence",
]
