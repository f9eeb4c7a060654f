"""Template rendering: Jinja2 in a sandbox, pure, with missing variables named by their path (SPEC §2, S11).

Why this shape:

* Templates are written by workspace editors, not by us, so they run in Jinja's
  ``ImmutableSandboxedEnvironment`` (a ``SandboxedEnvironment`` that also refuses to mutate lists and
  dicts): no private attributes, no Python internals, and the caller's data cannot be changed.
* The scheduler must tell "this contact lacks a value" (blocked, ``template_variable:NAME``) from "the
  template is broken" (blocked, ``render_error``). Everything a template can raise therefore comes out
  as exactly one of :class:`MissingVariable` or :class:`RenderFailure`.
* A contact is exposed through small path-aware namespaces, so an undefined value knows the dotted
  path the marketer wrote (``contact.fields.company``) and the reason can name it.
* Compiled templates are cached by (source, autoescape): a broadcast to 100,000 contacts compiles each
  part once, including a part that fails to compile.
* Rendering is pure: no I/O, no clock; tracked links come from the caller's ``link_url``.
"""

from __future__ import annotations

import functools
import html as html_text
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jinja2 import (
    Template,
    TemplateError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from dripflow.core.contact_view import ContactView
from dripflow.core.model import EmailTemplate, PostcardTemplate, SmsTemplate

__all__ = [
    "CONTACT_VARIABLES",
    "TOP_LEVEL_VARIABLES",
    "MissingVariable",
    "RenderContext",
    "RenderFailure",
    "RenderedEmail",
    "RenderedText",
    "links_used",
    "render_email",
    "render_postcard",
    "render_sms",
    "variables_used",
]

# SPEC §2: the contact attributes a template may use (plus ``contact.fields.KEY``).
CONTACT_VARIABLES: tuple[str, ...] = (
    "email",
    "first_name",
    "last_name",
    "phone",
    "timezone",
    "source",
    "owner",
    "score",
)
# SPEC §2: the names a template may use at the top level (``link`` is a function).
TOP_LEVEL_VARIABLES: frozenset[str] = frozenset({"contact", "workspace", "unsubscribe_url", "link"})

_TEMPLATE_FILENAME = "<template>"
_CACHE_SIZE = 1024
# Guards against the cheapest memory bombs (``{{ 'x' * 10**9 }}``); see _Sandbox.
_MAX_REPEAT = 100_000
_MAX_EXPONENT = 1_000
# Every character str.splitlines() breaks on: any of them could end a mail header line somewhere.
_SUBJECT_BREAKS = re.compile(r"\s*[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]\s*")
_SOURCE_LINE_MAX = 80


# --------------------------------------------------------------------------------------------------
# Public types


@dataclass(frozen=True)
class RenderContext:
    """Everything a template may see for one message; the caller builds and signs the URLs (D1, D2)."""

    contact: ContactView
    workspace_name: str
    physical_address: str
    unsubscribe_url: str
    link_url: Callable[[str], str]
    # D2: the signed open pixel; an email's HTML part ends with it (text parts never carry one).
    open_url: str | None = None


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered email: the subject is one line (no CR/LF), the html is autoescaped."""

    subject: str
    text: str
    html: str | None


@dataclass(frozen=True)
class RenderedText:
    """A rendered SMS or postcard; ``html`` only for a postcard template that has one."""

    text: str
    html: str | None = None


class MissingVariable(Exception):
    """A variable the template prints has no value for this contact (SPEC S11: ``template_variable:NAME``).

    ``path`` is the dotted path as written in the template (``contact.fields.company``); ``part`` the
    template part (``subject``, ``text``, ``html``, ``sms``) and ``line`` its line, when known.
    """

    def __init__(self, path: str, part: str | None = None, line: int | None = None, source: str = "") -> None:
        self.path = path
        self.part = part
        self.line = line
        super().__init__(_missing_message(path, _where(part, line, source)))

    @property
    def reason(self) -> str:
        """The enrollment's blocked reason (SPEC §6)."""
        return f"template_variable:{self.path}"


def _missing_message(path: str, where: str) -> str:
    """Say what to do: fill the contact in (or add a default), or fix a name that is not a variable."""
    parts = path.split(".")
    known = (
        path == "unsubscribe_url"
        or (parts[:1] == ["workspace"] and len(parts) == 2 and parts[1] in {"name", "physical_address"})
        or (parts[:1] == ["contact"] and len(parts) == 2 and parts[1] in CONTACT_VARIABLES)
        or (parts[:2] == ["contact", "fields"] and len(parts) >= 3)
    )
    if known:
        return (
            f"{path} has no value for this contact{where}; fill it in for the contact, "
            f"or give the template a default: {{{{ {path} | default('…') }}}}"
        )
    return (
        f"{path} is not a template variable{where}; use contact.first_name, contact.last_name, "
        f"contact.email, contact.phone, contact.timezone, contact.source, contact.owner, contact.score, "
        f"contact.fields.KEY, workspace.name, workspace.physical_address, unsubscribe_url or link('NAME')"
    )


class RenderFailure(Exception):
    """The template cannot be rendered: bad syntax, a forbidden operation, an error while rendering.

    Blocks with reason ``render_error`` (SPEC §6); ``message`` is meant for the marketer.
    """

    def __init__(
        self, message: str, part: str | None = None, line: int | None = None, source: str = ""
    ) -> None:
        self.message = f"{message}{_where(part, line, source)}"
        self.part = part
        self.line = line
        super().__init__(self.message)

    @property
    def reason(self) -> str:
        """The enrollment's blocked reason (SPEC §6)."""
        return "render_error"


# --------------------------------------------------------------------------------------------------
# Rendering


def render_email(template: EmailTemplate, ctx: RenderContext) -> RenderedEmail:
    """Render subject, text and html (autoescaped); the subject is collapsed to one line."""
    variables = _variables(ctx)
    subject = _render("subject", template.subject, False, variables)
    text = _render("text", template.text, False, variables)
    html = None if template.html is None else _render("html", template.html, True, variables)
    if html is not None and ctx.open_url is not None:
        html = with_open_pixel(html, ctx.open_url)
    return RenderedEmail(subject=_one_line(subject), text=text, html=html)


def with_open_pixel(html: str, url: str) -> str:
    """The HTML with a 1x1 open pixel (D2) just before its last ``</body>``, or at its end."""
    pixel = f'<img src="{html_text.escape(url)}" width="1" height="1" alt="" style="display:none">'
    at = html.lower().rfind("</body>")
    return html + pixel if at < 0 else html[:at] + pixel + html[at:]


def render_sms(template: SmsTemplate, ctx: RenderContext) -> RenderedText:
    """Render an SMS body (plain text)."""
    return RenderedText(text=_render("sms", template.sms, False, _variables(ctx)))


def render_postcard(template: PostcardTemplate, ctx: RenderContext) -> RenderedText:
    """Render a postcard's text and, when it has one, its html (autoescaped)."""
    variables = _variables(ctx)
    text = _render("text", template.text, False, variables)
    html = None if template.html is None else _render("html", template.html, True, variables)
    return RenderedText(text=text, html=html)


def _one_line(subject: str) -> str:
    """Collapse line breaks (and the blanks around them) to one space: no header injection (D1, D6)."""
    return _SUBJECT_BREAKS.sub(" ", subject).strip()


def _variables(ctx: RenderContext) -> dict[str, Any]:
    contact = ctx.contact
    values: dict[str, Any] = {name: getattr(contact, name) for name in CONTACT_VARIABLES}
    values["fields"] = _Namespace("contact.fields", contact.fields)
    return {
        "contact": _Namespace("contact", values),
        "workspace": _Namespace(
            "workspace", {"name": ctx.workspace_name, "physical_address": ctx.physical_address}
        ),
        "unsubscribe_url": ctx.unsubscribe_url,
        "link": _make_link(ctx.link_url),
    }


def _make_link(link_url: Callable[[str], str]) -> Callable[[Any], str]:
    def link(name: Any) -> str:
        """``link(NAME)``: the tracked URL of a catalog link (SPEC §2)."""
        if isinstance(name, Undefined):
            name._fail_with_undefined_error()
        if not isinstance(name, str):
            raise _TemplateProblem(f"link() takes a link name in quotes, e.g. link('offer'), not {name!r}")
        try:
            return link_url(name)
        except KeyError:
            raise _TemplateProblem(f"link({name!r}): no catalog link is named {name!r}") from None
        except Exception as exc:  # the caller's own failure, not the template's: let it surface as is
            raise _CallerError(exc) from exc

    return link


def _render(part: str, source: str, autoescape: bool, variables: Mapping[str, Any]) -> str:
    compiled = _compile(source, autoescape)
    if isinstance(compiled, _CompileError):
        raise RenderFailure(compiled.message, part, compiled.line, source)
    try:
        return compiled.render(variables)
    except _CallerError as exc:
        original = exc.original
        raise original from original.__cause__
    except _MissingPathError as exc:
        raise MissingVariable(exc.path, part, _template_line(exc.__traceback__), source) from None
    except SecurityError as exc:
        raise RenderFailure(f"not allowed in a template: {exc}", part, _line_of(exc), source) from None
    except TemplateError as exc:
        raise RenderFailure(str(exc) or type(exc).__name__, part, _line_of(exc), source) from None
    except Exception as exc:  # anything the template itself can raise: 1/0, 'a' + 1, a recursion …
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise RenderFailure(message, part, _line_of(exc), source) from None


@dataclass(frozen=True, slots=True)
class _CompileError:
    message: str
    line: int | None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str, autoescape: bool) -> Template | _CompileError:
    """The compiled template, or why it does not compile (cached too, so a bad one is parsed once)."""
    try:
        return _ENVIRONMENTS[autoescape].from_string(source)
    except TemplateSyntaxError as exc:
        return _CompileError(f"template syntax error: {exc.message or exc}", exc.lineno)
    except Exception as exc:  # e.g. RecursionError on absurd nesting: still the template's fault
        return _CompileError(f"template error: {type(exc).__name__}: {exc}", None)


def _line_of(exc: BaseException) -> int | None:
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    return _template_line(exc.__traceback__)


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line Jinja put in the rewritten traceback (innermost template frame).

    Walks the frames directly: ``traceback.extract_tb`` would read source files (I/O).
    """
    lines = [line for frame, line in traceback.walk_tb(tb) if frame.f_code.co_filename == _TEMPLATE_FILENAME]
    return lines[-1] if lines else None


def _where(part: str | None, line: int | None, source: str) -> str:
    bits = [part] if part else []
    if line is not None:
        text = source.splitlines()[line - 1].strip() if 0 < line <= len(source.splitlines()) else ""
        if len(text) > _SOURCE_LINE_MAX:
            text = text[: _SOURCE_LINE_MAX - 1] + "…"
        bits.append(f"line {line}: {text}" if text else f"line {line}")
    return f" (in {', '.join(bits)})" if bits else ""


# --------------------------------------------------------------------------------------------------
# What a template sees


class _TemplateProblem(TemplateError):
    """A template mistake found outside Jinja (a bad link() call): a render error."""


class _CallerError(Exception):
    """Carries an exception raised by the caller's ``link_url`` through Jinja, to re-raise unchanged."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


class _MissingPathError(UndefinedError):
    """Raised inside Jinja when a missing variable is used; ``_render`` turns it into MissingVariable.

    Jinja raises it as ``exc(message)``; _PathUndefined makes the message the path.
    """

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} is undefined")
        self.path = path


class _Namespace:
    """A group of variables (``contact``, ``contact.fields``, ``workspace``) that knows its own path.

    Only names are exposed (no methods, so a custom field called ``items`` or ``get`` is just a
    field); a value of ``None`` counts as missing (SPEC S11: a contact without a first name).
    """

    __slots__ = ("_path", "_values")

    def __init__(self, path: str, values: Mapping[str, Any]) -> None:
        self._path = path
        self._values = values

    def _lookup(self, name: object) -> Any:
        if not isinstance(name, str) or name.startswith("_"):
            return None
        return self._values.get(name)

    def __getattr__(self, name: str) -> Any:
        value = self._lookup(name)
        if value is None:
            raise AttributeError(name)
        return value

    def __getitem__(self, name: object) -> Any:
        value = self._lookup(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return self._lookup(name) is not None

    def __iter__(self) -> Iterator[Any]:
        raise _TemplateProblem(f"{self._path} cannot be looped over; use its parts, e.g. {self._example}")

    def __str__(self) -> str:
        raise _TemplateProblem(f"{self._path} cannot be printed itself; use its parts, e.g. {self._example}")

    @property
    def _example(self) -> str:
        first = next(iter(self._values), "NAME")
        return f"{{{{ {self._path}.{first} }}}}"


def _undefined_path(obj: Any, name: Any) -> str | None:
    if obj is missing:
        return str(name)
    if isinstance(obj, _Namespace):
        return f"{obj._path}.{name}" if isinstance(name, str) else f"{obj._path}[{name!r}]"
    return None


class _PathUndefined(Undefined):
    """An undefined value that remembers the dotted path the template wrote.

    Testing it is allowed (``{% if contact.fields.plan %}`` is false, ``| default('friend')`` and
    ``is defined`` work); printing, comparing, iterating, calling or computing with it raises with the
    path. Attribute access chains (``contact.fields.company.name``) keep the first missing path, so
    the reason names what the contact lacks. An undefined that is not a contact variable (an unsafe
    attribute, an attribute a value does not have, a macro argument) fails as Jinja would: a render
    error, not a missing variable.
    """

    __slots__ = ("_path",)

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        # Only a plain "not there" is a missing variable; Jinja's hinted or unsafe undefineds are not.
        path = _undefined_path(obj, name) if hint is None and exc is UndefinedError else None
        super().__init__(hint, obj, name, exc if path is None else _MissingPathError)
        self._path = path

    @property
    def _undefined_message(self) -> str:
        # Jinja fails with ``self._undefined_exception(self._undefined_message)`` from every operator
        # (bound in the base class), so the path travels as the message of _MissingPathError.
        return self._path if self._path is not None else super()._undefined_message

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__" and name[-2:] == "__":
            raise AttributeError(name)
        return self

    def __getitem__(self, name: Any) -> Any:
        return self

    def __str__(self) -> str:
        self._fail_with_undefined_error()

    def __iter__(self) -> Iterator[Any]:
        self._fail_with_undefined_error()

    def __len__(self) -> int:
        self._fail_with_undefined_error()

    def __contains__(self, item: Any) -> bool:
        self._fail_with_undefined_error()

    def __eq__(self, other: object) -> bool:
        self._fail_with_undefined_error()

    def __ne__(self, other: object) -> bool:
        self._fail_with_undefined_error()

    def __hash__(self) -> int:
        self._fail_with_undefined_error()

    def __repr__(self) -> str:
        return f"Undefined({self._path or self._undefined_name!r})"


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on ``*`` and ``**`` so ``{{ 'x' * 10**9 }}`` fails instead of eating memory.

    Intercepted operators are also not folded at compile time. This is not a full resource guard (a
    template author can still write slow loops); it stops the one-liners.
    """

    intercepted_binops = frozenset({"*", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # A namespace exposes names only (no methods, not a known mutable type): of the sandbox's
        # checks only the leading underscore can refuse one. Decided here at once (hot path: every
        # ``contact.first_name`` of every message).
        if type(obj) is _Namespace:
            return not attr.startswith("_")
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif (
            operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1 and right > _MAX_EXPONENT
        ):
            raise SecurityError(f"exponent {right} is too large (at most {_MAX_EXPONENT})")
        return super().call_binop(context, operator, left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_repeat(sequence: Any, times: Any) -> None:
    if (
        isinstance(sequence, str | bytes | list | tuple)
        and _is_int(times)
        and len(sequence) * times > _MAX_REPEAT
    ):
        raise SecurityError(f"repeating makes a value longer than {_MAX_REPEAT:,}")


def _environment(autoescape: bool) -> _Sandbox:
    return _Sandbox(undefined=_PathUndefined, autoescape=autoescape, keep_trailing_newline=True)


_ENVIRONMENTS: dict[bool, _Sandbox] = {False: _environment(False), True: _environment(True)}


# --------------------------------------------------------------------------------------------------
# Static analysis


def variables_used(source: str) -> frozenset[str]:
    """The dotted paths a template reads (``contact.fields.company``), for validation and explain.

    Attribute chains on top-level names are followed as written (``contact['fields'].plan`` counts as
    ``contact.fields.plan``); a method call drops the method (``contact.first_name.upper()`` reads
    ``contact.first_name``); ``link(...)``, Jinja's globals and template-local names are left out.
    Raises RenderFailure when the source does not parse.
    """
    return _analyse(source).variables


def links_used(source: str) -> frozenset[str]:
    """The catalog link names a template passes to ``link('NAME')`` as literals, for validation."""
    return _analyse(source).links


@dataclass(frozen=True, slots=True)
class _Analysis:
    variables: frozenset[str]
    links: frozenset[str]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _analyse(source: str) -> _Analysis:
    env = _ENVIRONMENTS[False]
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise RenderFailure(
            f"template syntax error: {exc.message or exc}", None, exc.lineno, source
        ) from None
    free = meta.find_undeclared_variables(tree) - set(env.globals) - {"link"}
    variables: set[str] = set()
    links: set[str] = set()

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.Call):
            target = node.node
            if isinstance(target, nodes.Name) and target.name == "link":
                name = _const_str(node.args[0]) if node.args else None
                if name is not None:
                    links.add(name)
            elif _chain(target) is not None and isinstance(target, nodes.Getattr | nodes.Getitem):
                visit(target.node)  # a method call: the object is what is read
            else:
                visit(target)
            for child in (*node.args, *node.kwargs):
                visit(child)
            for extra in (node.dyn_args, node.dyn_kwargs):
                if extra is not None:
                    visit(extra)
            return
        path = _chain(node)
        if path is not None:
            root = path.split(".", 1)[0]
            if root in free:
                variables.add(path)
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return _Analysis(frozenset(variables), frozenset(links))


def _const_str(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def _chain(node: nodes.Node) -> str | None:
    """``a.b['c'].d`` as ``"a.b.c.d"`` when it is a chain of names on a loaded Name, else None."""
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and (key := _const_str(node.arg)) is not None:
            parts.append(key)
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            parts.append(node.name)
            return ".".join(reversed(parts))
        else:
            return None
