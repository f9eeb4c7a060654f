"""YAML text to plain data, remembering the line of every key (SPEC §2: `FILE:LINE: path: message`).

PyYAML's safe composer builds the node graph (nothing is ever constructed from tags); we turn the
nodes into dicts, lists and scalars ourselves so that we can

* record, for each key path such as ``sequences[0].steps[2].template``, the 1-based line of the key
  (of the item, for list entries) — the validator points every problem at one;
* refuse duplicate keys, which PyYAML silently lets win, with both lines;
* read scalars the way a marketer means them. YAML 1.1 turns ``at: 10:00`` into 600 (base 60),
  ``on:`` into ``True`` and ``from: +15550100`` into an integer without its ``+``; here only
  ``true``/``false`` are booleans, only plain decimal numbers are numbers, keys are always text and
  everything else stays the text that was written (dates included: the model parses them).

Explicit tags (``!!int``, ``!!python/...``) are ignored: a node is read by its shape and text only.
Merge keys (``<<: *defaults``) are honoured, explicit keys winning. Aliases are expanded under a
budget so that a "billion laughs" file is a problem, not an outage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

PathPart = str | int
Loc = tuple[PathPart, ...]

_FAST_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 64
MAX_NODES = 200_000

_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})


def format_path(loc: Sequence[PathPart]) -> str:
    """``("sequences", 0, "steps", 2, "template")`` → ``sequences[0].steps[2].template``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True)
class SourceIssue:
    """A problem found while reading the text itself (syntax, duplicate key, runaway alias)."""

    line: int
    path: str
    message: str


@dataclass
class YamlSource:
    """The data of a YAML document and where each key path was written.

    ``data`` is ``None`` when the text could not be read at all (see ``issues``).
    """

    data: object
    lines: dict[str, int] = field(default_factory=dict)
    issues: list[SourceIssue] = field(default_factory=list)

    def line_of(self, loc: Sequence[PathPart]) -> int:
        """The line of ``loc``, else of its nearest parent that exists, else 1."""
        parts = list(loc)
        while parts:
            line = self.lines.get(format_path(parts))
            if line is not None:
                return line
            parts.pop()
        return self.lines.get("", 1)


class _TooComplex(Exception):
    """The alias budget or the nesting limit was exceeded."""

    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.issue = SourceIssue(line, path, message)


def parse_yaml(text: str) -> YamlSource:
    """Read one YAML document; syntax errors become issues carrying PyYAML's line."""
    try:
        # libyaml is four times faster; on an error the pure-Python reader explains it better
        root = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        return _read_slowly(text)
    return _build(root)


def _read_slowly(text: str) -> YamlSource:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        return YamlSource(None, issues=[_syntax_issue(exc)])
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        return YamlSource(
            None,
            issues=[SourceIssue(line, "", f"the file contains a character YAML cannot read ({exc.reason})")],
        )
    except yaml.YAMLError as exc:  # any other PyYAML complaint, without a position
        return YamlSource(None, issues=[SourceIssue(1, "", f"YAML syntax error: {exc}")])
    except RecursionError:
        return YamlSource(None, issues=[SourceIssue(1, "", "the file is nested too deeply to read")])
    return _build(root)


def _build(root: Node | None) -> YamlSource:
    source = YamlSource(None, lines={"": 1})
    if root is None:
        return source
    builder = _Builder(source)
    try:
        source.data = builder.convert(root, ())
    except _TooComplex as exc:
        source.data = None
        source.issues.append(exc.issue)
    return source


def _syntax_issue(exc: yaml.MarkedYAMLError) -> SourceIssue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    what = exc.problem or exc.context or "the text is not valid YAML"
    if exc.context and exc.problem and exc.problem.startswith("but "):
        what = f"{exc.context}, {exc.problem}"  # "expected a single document …, but found another"
    elif exc.context and exc.problem and exc.context_mark is not None:
        what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    return SourceIssue(line, "", f"YAML syntax error: {what}")


class _Builder:
    """Node graph → plain data, filling the line map and the issue list of one source."""

    def __init__(self, source: YamlSource) -> None:
        self.source = source
        self.budget = MAX_NODES
        self.active: set[int] = set()

    def convert(self, node: Node, loc: Loc) -> object:
        line = node.start_mark.line + 1
        if len(loc) > MAX_DEPTH:
            raise _TooComplex(line, format_path(loc), f"nested more than {MAX_DEPTH} levels deep")
        self.budget -= 1
        if self.budget < 0:
            raise _TooComplex(
                line, format_path(loc[:1]), "the file expands to too much data (aliases repeated too often)"
            )
        if id(node) in self.active:
            raise _TooComplex(line, format_path(loc), "an alias refers to the item that contains it")
        if isinstance(node, ScalarNode):
            return _scalar(node)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                items: list[object] = []
                for index, child in enumerate(node.value):
                    child_loc = (*loc, index)
                    self.source.lines.setdefault(format_path(child_loc), child.start_mark.line + 1)
                    items.append(self.convert(child, child_loc))
                return items
            assert isinstance(node, MappingNode)
            return self._mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[str, object]:
        result: dict[str, object] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                self._issue(key_line, loc, "a key must be a plain name, not a list or a mapping")
                continue
            if key_node.value == "<<" and not key_node.style:
                merges.append(value_node)
                continue
            key = key_node.value
            child_loc = (*loc, key)
            if key in first_line:
                self._issue(
                    key_line, child_loc, f"duplicate key '{key}' (first given on line {first_line[key]})"
                )
                continue
            first_line[key] = key_line
            self.source.lines[format_path(child_loc)] = key_line
            result[key] = self.convert(value_node, child_loc)
        for merge in merges:
            self._merge(result, merge, loc)
        return result

    def _merge(self, result: dict[str, object], merge: Node, loc: Loc) -> None:
        """``<<: *base`` or ``<<: [*a, *b]``: copy keys not given explicitly (earlier sources win)."""
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for source in sources:
            if not isinstance(source, MappingNode):
                self._issue(source.start_mark.line + 1, loc, "'<<' must merge a mapping (such as *defaults)")
                continue
            for key_node, value_node in source.value:
                if not isinstance(key_node, ScalarNode) or key_node.value in result or key_node.value == "<<":
                    continue
                child_loc = (*loc, key_node.value)
                self.source.lines[format_path(child_loc)] = key_node.start_mark.line + 1
                result[key_node.value] = self.convert(value_node, child_loc)

    def _issue(self, line: int, loc: Loc, message: str) -> None:
        self.source.issues.append(SourceIssue(line, format_path(loc), message))


def _scalar(node: ScalarNode) -> object:
    """The value of a scalar as written; see the module docstring for the (YAML 1.2-like) rules."""
    text: str = node.value
    if node.style:  # quoted or block text is always text (plain is None, or "" from libyaml)
        return text
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if len(text) <= 30 and _INT.fullmatch(text):  # longer digit runs are identifiers, not numbers
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text
