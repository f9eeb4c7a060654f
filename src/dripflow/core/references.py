"""Checks that need the whole workspace: names resolve, ids are unique, steps fit their sequence.

Runs after the structure is valid (SPEC §2: "every reference … must resolve"). Each finding is a
file location (key path parts, as in the YAML) and a message with a did-you-mean suggestion.
Template texts are parsed as Jinja2 here too, so a syntax error or a ``link('NAME')`` naming no
catalog link is found before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from functools import cache

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

from dripflow.core.actions_model import ActionModel, ClearField, Goto, GrantMembership, SetField
from dripflow.core.conditions_model import (
    AllOf,
    AnyOf,
    CompletedLevel,
    ConditionNode,
    FieldIs,
    HasMembership,
    IsAffiliate,
    IsJvBroker,
    Not,
    OpenedEmail,
    ReachedStep,
    Scalar,
    SurveyAnswer,
    SurveyScore,
)
from dripflow.core.fieldvalues import FieldType
from dripflow.core.model import (
    EmailTemplate,
    PostcardTemplate,
    Sequence,
    SmsTemplate,
    TemplateNode,
    Workspace,
)
from dripflow.core.modeltypes import ascii_domain, did_you_mean, unknown_name
from dripflow.core.steps_model import (
    EmailStep,
    PostcardStep,
    RuleStep,
    SmsStep,
    StepNode,
    WaitUntilStep,
)
from dripflow.core.triggers_model import ContactUpdated, MembershipEvent, StepReached, TriggerNode
from dripflow.core.yamlsource import Loc, format_path

Finding = tuple[Loc, str]

# Contact attributes that `field` conditions and `contact.updated` may name besides custom fields.
CONTACT_ATTRIBUTES = ("email", "phone", "first_name", "last_name", "timezone", "source", "owner")


@cache
def _jinja() -> SandboxedEnvironment:
    return SandboxedEnvironment()


class _Checker:
    """Collects findings for one workspace; ``where`` turns a location into "line N" for messages."""

    def __init__(self, ws: Workspace, where: Callable[[Loc], str]) -> None:
        self.ws = ws
        self.where = where
        self.findings: list[Finding] = []
        catalog = ws.catalog
        self.fields: dict[str, FieldType] = {item.key: item.type for item in ws.fields}
        self.sequences: dict[str, Sequence] = {item.id: item for item in ws.sequences}
        self.names: dict[str, Iterable[str]] = {
            "list": ws.lists,
            "tag": ws.tags,
            "field": self.fields,
            "product": catalog.products,
            "form": catalog.forms,
            "page": catalog.pages,
            "video": catalog.videos,
            "membership": catalog.memberships,
            "webinar": catalog.webinars,
            "calendar": catalog.calendars,
            "survey": catalog.surveys,
            "link": catalog.links,
            "mailbox": [item.id for item in ws.mailboxes],
            "schedule": [item.id for item in ws.schedules],
            "sequence": self.sequences,
            "broadcast": [item.id for item in ws.broadcasts],
            "template": ws.templates,
        }

    def add(self, loc: Loc, message: str) -> None:
        self.findings.append((loc, message))

    def ref(self, what: str, name: str, loc: Loc) -> bool:
        """Report ``name`` unless a ``what`` of that name is declared; True when it resolves."""
        declared = self.names[what]
        if name in declared:
            return True
        # names starting with "__" are stand-ins for broken declarations (see salvage); not choices
        self.add(loc, unknown_name(what, name, [item for item in declared if not item.startswith("__")]))
        return False

    # ---------------------------------------------------------------------------------- uniqueness

    def unique(self, what: str, names: Iterable[str], loc_of: Callable[[int], Loc]) -> None:
        first: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in first:
                self.add(
                    loc_of(index),
                    f"{what} '{name}' is declared twice (first {self.where(loc_of(first[name]))})",
                )
            else:
                first[name] = index

    def check_declarations(self) -> None:
        ws = self.ws
        self.unique("mailbox", [m.id for m in ws.mailboxes], lambda i: ("mailboxes", i, "id"))
        self.unique("schedule", [s.id for s in ws.schedules], lambda i: ("schedules", i, "id"))
        self.unique("field", [f.key for f in ws.fields], lambda i: ("fields", i, "key"))
        self.unique("list", ws.lists, lambda i: ("lists", i))
        self.unique("tag", ws.tags, lambda i: ("tags", i))
        self.unique("sequence", [s.id for s in ws.sequences], lambda i: ("sequences", i, "id"))
        self.unique("automation", [a.id for a in ws.automations], lambda i: ("automations", i, "id"))
        self.unique("broadcast", [b.id for b in ws.broadcasts], lambda i: ("broadcasts", i, "id"))
        self.unique(
            "exclusion",
            [e.name for e in ws.ruleset.exclusions],
            lambda i: ("ruleset", "exclusions", i, "name"),
        )
        for key in ("products", "forms", "pages", "videos", "webinars", "calendars", "surveys"):
            items: tuple[str, ...] = getattr(ws.catalog, key)
            self.unique(key[:-1], items, lambda i, key=key: ("catalog", key, i))  # type: ignore[misc]
        for membership, levels in ws.catalog.memberships.items():
            self.unique("level", levels, lambda i, m=membership: ("catalog", "memberships", m, i))  # type: ignore[misc]
        defaults = [index for index, mailbox in enumerate(ws.mailboxes) if mailbox.default]
        for index in defaults[1:]:
            first = ws.mailboxes[defaults[0]].id
            self.add(
                ("mailboxes", index, "default"), f"only one mailbox can be the default ('{first}' already is)"
            )

        self.dkim()

    def dkim(self) -> None:
        """``delivery.dkim``: one entry per domain, and each for a domain some mailbox sends from.
        An entry no mailbox uses is an error, not a warning: it is most likely a typo, and a typo
        here would send the mail it was meant for unsigned (docs/delivery.md, "DKIM")."""
        entries = self.ws.delivery.dkim
        if not entries:
            return
        self.unique("DKIM domain", [e.domain for e in entries], lambda i: ("delivery", "dkim", i, "domain"))
        senders = {domain for mailbox in self.ws.mailboxes if (domain := mailbox_domain(mailbox.address))}
        for index, entry in enumerate(entries):
            if entry.domain not in senders:
                hint = did_you_mean(entry.domain, senders)
                if not hint:
                    shown = ", ".join(sorted(senders))
                    hint = f" (mailboxes send from {shown})" if senders else " (no mailbox is declared)"
                self.add(
                    ("delivery", "dkim", index, "domain"),
                    f"no mailbox sends from '{entry.domain}', and an entry signs mail from its own domain "
                    f"only{hint}",
                )

    # ---------------------------------------------------------------------------------- conditions

    def condition(self, cond: ConditionNode, loc: Loc) -> None:
        match cond:
            case AllOf(items=items) | AnyOf(items=items):
                for index, item in enumerate(items):
                    self.condition(item, (*loc, cond.kind, index))
                return
            case Not(item=item):
                self.condition(item, (*loc, "not"))
                return
        at = (*loc, cond.kind)
        match cond:
            case FieldIs(arg=test):
                if self.field_ref(test.key, (*at, "key"), attributes=CONTACT_ATTRIBUTES) and test.op in (
                    "eq",
                    "ne",
                    "lt",
                    "lte",
                    "gt",
                    "gte",
                ):
                    self.field_value(test.key, test.value, (*at, "value"))
            case ReachedStep(arg=ref):
                self.step_ref(ref.sequence, ref.step, at)
            case OpenedEmail(arg=ref):
                if ref.sequence is not None:
                    self.step_ref(ref.sequence, ref.step, at)
                if ref.broadcast is not None:
                    self.ref("broadcast", ref.broadcast, (*at, "broadcast"))
            case HasMembership(arg=ref):
                self.level_ref(ref.membership, ref.level, at)
            case SurveyAnswer(arg=test) | SurveyScore(arg=test):
                self.ref("survey", test.survey, (*at, "survey"))
            case IsAffiliate(arg=str(product)) | IsJvBroker(arg=str(product)):
                self.ref("product", product, at)
            case CompletedLevel(arg=ref):
                self.level_ref(ref.membership, ref.level, at)
            case _:
                name = cond.plain_name()
                if cond.refers_to is not None and name is not None:
                    self.ref(cond.refers_to, name, at)

    def step_ref(self, sequence_id: str, step_id: str | None, loc: Loc) -> None:
        if not self.ref("sequence", sequence_id, (*loc, "sequence")) or step_id is None:
            return
        steps = [step.id for step in self.sequences[sequence_id].steps]
        if step_id not in steps:
            self.add((*loc, "step"), unknown_name("step", step_id, steps, f" in sequence '{sequence_id}'"))

    def level_ref(self, membership: str, level: str | None, loc: Loc) -> None:
        if not self.ref("membership", membership, (*loc, "membership")) or level is None:
            return
        levels = self.ws.catalog.memberships[membership]
        if level not in levels:
            self.add((*loc, "level"), unknown_name("level", level, levels, f" in membership '{membership}'"))

    def field_ref(self, key: str, loc: Loc, attributes: tuple[str, ...] = ()) -> bool:
        if key in self.fields or key in attributes:
            return True
        self.add(loc, unknown_name("field", key, [*self.fields, *attributes]))
        return False

    def field_value(self, key: str, value: Scalar, loc: Loc) -> None:
        kind = self.fields.get(key)
        if kind is None or value is None or _fits(kind, value):
            return
        wanted = {
            "number": "a number",
            "boolean": "true or false",
            "date": "a date (YYYY-MM-DD)",
            "text": "text",
        }
        self.add(loc, f"field '{key}' is a {kind} field: its value must be {wanted[kind]}, not {value!r}")

    # ---------------------------------------------------------------------------------- triggers, actions

    def trigger(self, trigger: TriggerNode, loc: Loc) -> None:
        given = trigger.filters()
        for key, what in trigger.refs.items():
            if isinstance(given.get(key), str):
                self.ref(what, str(given[key]), (*loc, key))
        match trigger:
            case StepReached(sequence=str(sequence), step=str(step)) if sequence in self.sequences:
                steps = [item.id for item in self.sequences[sequence].steps]
                if step not in steps:
                    self.add((*loc, "step"), unknown_name("step", step, steps, f" in sequence '{sequence}'"))
            case MembershipEvent(membership=str(membership), level=str(level)):
                if membership in self.ws.catalog.memberships:
                    self.level_ref(membership, level, loc)
            case ContactUpdated(changed=str(changed)):
                # the engine also names `address` (an event's contact) and `score` (give/subtract_points)
                names = (*CONTACT_ATTRIBUTES, "address", "score")
                self.field_ref(changed, (*loc, "changed"), attributes=names)

    def actions(self, actions: Iterable[ActionModel], loc: Loc, sequence: Sequence | None = None) -> None:
        """Check actions; ``sequence`` is the one a rule step's ``goto`` may jump within."""
        for index, action in enumerate(actions):
            at = (*loc, index, action.kind)
            match action:
                case SetField(arg=assignment):
                    if self.field_ref(assignment.key, (*at, "key"), attributes=CONTACT_ATTRIBUTES[1:]):
                        self.field_value(assignment.key, assignment.value, (*at, "value"))
                case ClearField(arg=key):
                    self.field_ref(key, at, attributes=CONTACT_ATTRIBUTES[1:])
                case GrantMembership(arg=ref):
                    self.level_ref(ref.membership, ref.level, at)
                case Goto(arg=target) if sequence is not None:
                    ids = [step.id for step in sequence.steps]
                    if target not in ids:
                        self.add(at, unknown_name("step", target, ids, f" in sequence '{sequence.id}'"))
                case _:
                    name = action.plain_name()
                    if action.refers_to not in (None, "step") and name is not None:
                        self.ref(str(action.refers_to), name, at)

    # ---------------------------------------------------------------------------------- templates

    def templates(self) -> None:
        for name, template in self.ws.templates.items():
            loc: Loc = ("templates", name)
            texts: dict[str, str | None] = {}
            if isinstance(template, EmailTemplate):
                texts = {"subject": template.subject, "text": template.text, "html": template.html}
                for link, actions in template.links.items():
                    self.ref("link", link, (*loc, "links", link))
                    self.actions(actions, (*loc, "links", link))
            elif isinstance(template, SmsTemplate):
                texts = {"sms": template.sms}
            else:
                texts = {"text": template.text, "html": template.html}
            for key, text in texts.items():
                if text is not None:
                    self.template_text(text, (*loc, key))

    def template_text(self, text: str, loc: Loc) -> None:
        try:
            tree = _jinja().parse(text)
        except TemplateSyntaxError as exc:
            self.add(loc, f"template error on line {exc.lineno} of this text: {exc.message}")
            return
        for call in tree.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name == "link" and call.args:
                first = call.args[0]
                if isinstance(first, nodes.Const) and isinstance(first.value, str):
                    self.ref("link", first.value, loc)

    def template_ref(self, name: str, kind: type[TemplateNode], loc: Loc) -> None:
        if not self.ref("template", name, loc):
            return
        found = self.ws.templates[name]
        if not isinstance(found, kind):
            label = {"email": "an email", "sms": "an SMS", "postcard": "a postcard"}
            needs = {
                EmailTemplate: "an email template (with subject and text)",
                SmsTemplate: "an SMS template (with sms)",
                PostcardTemplate: "a postcard template (text, no subject)",
            }[kind]
            self.add(loc, f"template '{name}' is {label[found.kind]} template, but this needs {needs}")

    # ---------------------------------------------------------------------------------- sequences

    def sequence(self, index: int, sequence: Sequence) -> None:
        loc: Loc = ("sequences", index)
        pool = sequence.mailbox_pool
        single = isinstance(sequence.mailbox, str)
        for position, mailbox in enumerate(pool):
            self.ref("mailbox", mailbox, (*loc, "mailbox") if single else (*loc, "mailbox", position))
        if sequence.schedule is not None:
            self.ref("schedule", sequence.schedule, (*loc, "schedule"))
        if sequence.recipients is not None:
            self.condition(sequence.recipients, (*loc, "recipients"))
        for position, trigger in enumerate(sequence.start_when):
            self.trigger(trigger, (*loc, "start_when", position))
        for position, stop in enumerate(sequence.stop_on):
            if not isinstance(stop, str):
                self.condition(stop, (*loc, "stop_on", position))
        self.unique("step", [step.id for step in sequence.steps], lambda i: (*loc, "steps", i, "id"))
        seen_email = False
        routed = bool(self.ws.mailboxes)
        for position, step in enumerate(sequence.steps):
            at: Loc = (*loc, "steps", position)
            self.step_timing(sequence, step, at)
            if isinstance(step, EmailStep):
                self.email_step(step, at, first_email=not seen_email and sequence.kind == "step")
                if not routed and step.mailbox is None and not pool:
                    self.add(at, "no mailbox to send this email from: declare one under mailboxes (SPEC S10)")
                    routed = True  # once is enough
                seen_email = True
            elif isinstance(step, SmsStep):
                self.template_ref(step.template, SmsTemplate, (*at, "template"))
            elif isinstance(step, PostcardStep):
                self.template_ref(step.template, PostcardTemplate, (*at, "template"))
            elif isinstance(step, RuleStep):
                if step.if_ is not None:
                    self.condition(step.if_, (*at, "if"))
                elif step.else_:
                    self.add((*at, "else"), "else never runs in a rule without if")
                self.actions(step.then, (*at, "then"), sequence)
                self.actions(step.else_, (*at, "else"), sequence)
            elif isinstance(step, WaitUntilStep):
                self.condition(step.until, (*at, "until"))

    def step_timing(self, sequence: Sequence, step: StepNode, at: Loc) -> None:
        if sequence.kind == "date":
            if step.on is None:
                self.add((*at, "on"), "a step of a date sequence needs on: {date: …} or {field: …} (SPEC T7)")
            elif step.on.field_key is not None and self.field_ref(step.on.field_key, (*at, "on", "field")):
                kind = self.fields[step.on.field_key]
                if kind != "date":
                    self.add(
                        (*at, "on", "field"),
                        f"field '{step.on.field_key}' is a {kind} field, not a date field",
                    )
            if step.after.span:
                self.add((*at, "after"), "after has no effect in a date sequence: use on with an offset")
        else:
            if step.on is not None:
                self.add((*at, "on"), "on is for steps of a date sequence (kind: date); use after here")
            if step.annually:
                self.add((*at, "annually"), "annually is for steps of a date sequence (kind: date)")

    def email_step(self, step: EmailStep, at: Loc, first_email: bool) -> None:
        if step.template is not None:
            self.template_ref(step.template, EmailTemplate, (*at, "template"))
        for position, variant in enumerate(step.variants or ()):
            self.template_ref(variant.template, EmailTemplate, (*at, "variants", position, "template"))
        if step.mailbox is not None:
            self.ref("mailbox", step.mailbox, (*at, "mailbox"))
        if step.reply_to_previous and first_email:
            self.add(
                (*at, "reply_to_previous"), "there is no earlier email step in this sequence to reply to"
            )

    # ---------------------------------------------------------------------------------- the rest

    def run(self) -> list[Finding]:
        ws = self.ws
        self.check_declarations()
        for index, exclusion in enumerate(ws.ruleset.exclusions):
            self.condition(exclusion.if_, ("ruleset", "exclusions", index, "if"))
        self.templates()
        for index, sequence in enumerate(ws.sequences):
            self.sequence(index, sequence)
        for index, automation in enumerate(ws.automations):
            loc: Loc = ("automations", index)
            self.trigger(automation.when, (*loc, "when"))
            if automation.if_ is not None:
                self.condition(automation.if_, (*loc, "if"))
            self.actions(automation.then, (*loc, "then"))
        for index, broadcast in enumerate(ws.broadcasts):
            loc = ("broadcasts", index)
            self.condition(broadcast.audience, (*loc, "audience"))
            self.template_ref(broadcast.template, EmailTemplate, (*loc, "template"))
            if broadcast.mailbox is not None:
                self.ref("mailbox", broadcast.mailbox, (*loc, "mailbox"))
            elif not ws.mailboxes:
                self.add(loc, "no mailbox to send this broadcast from: declare one under mailboxes")
        return self.findings


def mailbox_domain(address: str) -> str | None:
    """The domain of a mailbox's bare address in wire form (what a DKIM entry is matched against)."""
    return ascii_domain(address.rpartition("@")[2]) if "@" in address else None


def _fits(kind: FieldType, value: Scalar) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "date":
        try:
            date.fromisoformat(str(value))
        except ValueError:
            return False
        return True
    return True


def check_references(workspace: Workspace, where: Callable[[Loc], str] | None = None) -> list[Finding]:
    """Every unresolved name, duplicate id and misplaced step field of ``workspace``.

    ``where`` describes a location for "first declared …" messages (default: its key path).
    """
    describe_loc = where or (lambda loc: f"at {format_path(loc)}")
    return _Checker(workspace, describe_loc).run()


def declared_names(workspace: Workspace) -> Mapping[str, Iterable[str]]:
    """What each kind of reference may name, for callers that offer choices."""
    return _Checker(workspace, str).names
