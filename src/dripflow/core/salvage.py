"""Make a structurally broken workspace valid enough to check its references too.

The validator must report every problem in one pass (SPEC §2, X4): a bad time zone must not hide
an unknown tag three sections further down. So when pydantic refuses the data we cut out each
offending part and validate again: an optional key is deleted; a declaration (a sequence, a step,
a template, a mailbox …) is replaced by a stub that keeps its id, so that what refers to it still
resolves; a top-level section falls back to its default. List items are never removed, so the
locations of everything else stay true. The parts cut out are returned, and the caller ignores
reference findings inside them (they would only describe the stubs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from pydantic import ValidationError

from dripflow.core.model import Workspace
from dripflow.core.yamlsource import Loc

MAX_ROUNDS = 30

Locate = Callable[[tuple[int | str, ...], object], Loc]
Stub = Callable[[object, int | str], object]


def salvage(data: dict[str, object], locate: Locate) -> tuple[Workspace | None, set[Loc]]:
    """A workspace built from ``data`` minus its broken parts, and the regions to ignore in it.

    ``locate`` turns a pydantic error location into a file location (see ``validate.file_loc``).
    Returns ``(None, …)`` if no valid remainder was found in a few rounds.
    """
    work = copy.deepcopy(data)
    tried: set[Loc] = set()
    hidden: set[Loc] = set()
    for _ in range(MAX_ROUNDS):
        try:
            return Workspace.model_validate(work), hidden
        except ValidationError as exc:
            this_round: set[Loc] = set()
            for error in exc.errors():
                loc = locate(error["loc"], work)
                if inside(loc, this_round):
                    continue  # already cut away with a neighbour
                target = _cut(work, loc, missing=error["type"] == "missing", tried=tried)
                if target is not None:
                    this_round.add(target)
                    hidden |= _hide(target, data)
            if not this_round:
                break
            tried |= this_round
    return None, hidden


def inside(loc: Loc, regions: set[Loc]) -> bool:
    """True when ``loc`` is one of ``regions`` or lies within one."""
    return any(loc[: len(region)] == region for region in regions)


def _hide(target: Loc, original: object) -> set[Loc]:
    """What to ignore after cutting ``target``: all of it, except texts a template stub kept as written."""
    if _shape(target) != ("templates", "*"):
        return {target}
    value = _get(original, target)
    if not isinstance(value, dict):
        return {target}
    stub = _template(value, "")
    assert isinstance(stub, dict)
    return {
        (*target, key)
        for key in {*value, *stub}
        if not isinstance(key, str) or stub.get(key) != value.get(key)
    }


def _cut(work: dict[str, object], loc: Loc, missing: bool, tried: set[Loc]) -> Loc | None:
    """Remove or stub the smallest part around ``loc`` not tried yet; return what was cut."""
    if missing and loc not in tried and (stub := _stub_for(loc)) is not None:
        container = _get(work, loc[:-1])
        if isinstance(container, dict):
            container[loc[-1]] = stub(None, loc[-1])  # a required part, absent
            return loc
    end = len(loc) - 1 if missing else len(loc)
    for size in range(end, 0, -1):
        prefix = loc[:size]
        if prefix in tried:
            continue
        parent = _get(work, prefix[:-1])
        key = prefix[-1]
        stub = _stub_for(prefix)
        if stub is not None:
            if isinstance(parent, list) and isinstance(key, int) and 0 <= key < len(parent):
                parent[key] = stub(parent[key], key)
                return prefix
            if isinstance(parent, dict) and isinstance(key, str):
                parent[key] = stub(parent.get(key), key)
                return prefix
        elif isinstance(parent, dict) and isinstance(key, str) and key in parent:
            del parent[key]
            return prefix
    return None


def _stub_for(loc: Loc) -> Stub | None:
    """How to stand in for the part at ``loc``: a declaration keeps its id, a usage becomes harmless."""
    shape = _shape(loc)
    if shape in _STUBS:
        return _STUBS[shape]
    last = shape[-1]
    container = shape[-2] if len(shape) > 1 and last == "#" else None
    if last in ("if", "until", "recipients", "audience", "not") or container in ("all", "any"):
        return lambda value, _: {"source": "-"}
    if last == "when" or container == "start_when":
        return lambda value, _: {"event": "contact.created"}
    if container in ("then", "else") or (shape[:3] == ("templates", "*", "links") and last == "#"):
        return lambda value, _: {"give_points": 1}
    if container == "stop_on":
        return lambda value, _: "replied"
    return None


def _get(node: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _shape(loc: Loc) -> tuple[str, ...]:
    """``("sequences", 0, "steps", 2)`` → ``("sequences", "#", "steps", "#")``; dict names → ``"*"``."""
    shape: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int):
            shape.append("#")
        elif index > 0 and shape[-1] in ("templates", "memberships", "links"):
            shape.append("*")
        else:
            shape.append(part)
    return tuple(shape)


def _text(value: object, key: str) -> object:
    return value.get(key) if isinstance(value, dict) and isinstance(value.get(key), str) else None


def _name(value: object, key: str, fallback: str) -> str:
    found = _text(value, key)
    return found if isinstance(found, str) and found.strip() else fallback


def _sequence(value: object, index: int | str) -> object:
    steps = value.get("steps") if isinstance(value, dict) else None
    stubs = [
        {"id": step["id"], "type": "rule"}
        for step in (steps if isinstance(steps, list) else [])
        if isinstance(step, dict) and isinstance(step.get("id"), str) and step["id"].strip()
    ]
    return {"id": _name(value, "id", f"__sequence_{index}"), "steps": stubs}


def _template(value: object, name: int | str) -> object:
    """A template of the same kind keeping its texts, so that their links are still checked."""

    def keep(*keys: str) -> dict[str, str]:
        return {key: _name(value, key, "-") for key in keys}

    if isinstance(value, dict) and "sms" in value:
        return keep("sms")
    if isinstance(value, dict) and value and "subject" not in value and set(value) <= {"text", "html"}:
        return keep("text", "html")
    return keep("subject", "text", "html")


def _field(value: object, index: int | str) -> object:
    kind = _text(value, "type")
    return {
        "key": _name(value, "key", f"__field_{index}"),
        "type": kind if kind in ("text", "number", "date", "boolean") else "text",
    }


def _placeholder(value: object, index: int | str) -> object:
    return value if isinstance(value, str) and value.strip() else f"__invalid_{index}"


_STUBS: dict[tuple[str, ...], Stub] = {
    ("workspace",): lambda value, _: {"name": "workspace", "timezone": "UTC"},
    ("sequences", "#"): _sequence,
    ("sequences", "#", "steps", "#"): lambda value, i: {
        "id": _name(value, "id", f"__step_{i}"),
        "type": "rule",
    },
    ("automations", "#"): lambda value, i: {
        "id": _name(value, "id", f"__automation_{i}"),
        "when": {"event": "contact.created"},
        "then": [{"give_points": 1}],
    },
    ("broadcasts", "#"): lambda value, i: {
        "id": _name(value, "id", f"__broadcast_{i}"),
        "send_at": "2000-01-01 00:00",
        "audience": {"source": "-"},
        "template": "-",
    },
    ("mailboxes", "#"): lambda value, i: {
        "id": _name(value, "id", f"__mailbox_{i}"),
        "from": "stub@example.test",
    },
    ("schedules", "#"): lambda value, i: {"id": _name(value, "id", f"__schedule_{i}")},
    ("fields", "#"): _field,
    ("ruleset", "exclusions", "#"): lambda value, i: {"name": f"__exclusion_{i}", "if": {"source": "-"}},
    ("templates", "*"): _template,
    ("lists", "#"): _placeholder,
    ("tags", "#"): _placeholder,
    ("catalog", "memberships", "*"): lambda value, _: [],
    ("catalog", "memberships", "*", "#"): _placeholder,
    ("catalog", "links", "*"): lambda value, _: "https://invalid.test/",
    ("mailboxes", "#", "from"): lambda value, _: "stub@example.test",
    ("sequences", "#", "steps", "#", "title"): lambda value, _: "-",
    ("sequences", "#", "steps", "#", "template"): lambda value, _: "-",
    ("automations", "#", "then"): lambda value, _: [{"give_points": 1}],
    ("broadcasts", "#", "send_at"): lambda value, _: "2000-01-01 00:00",
    ("broadcasts", "#", "template"): lambda value, _: "-",
    **{("catalog", kind, "#"): _placeholder for kind in ("products", "forms", "pages", "videos", "webinars")},
    **{("catalog", kind, "#"): _placeholder for kind in ("calendars", "surveys")},
}
