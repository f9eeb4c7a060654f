"""The workspace file of SPEC §2 as typed, immutable pydantic models.

``Workspace`` is the whole file. Its parts live here (settings, ruleset, mailboxes, delivery,
schedules, fields, catalog, templates, sequences, automations, broadcasts) and in the sibling
modules re-exported below: conditions (:mod:`.conditions_model`), actions (:mod:`.actions_model`),
triggers (:mod:`.triggers_model`), steps (:mod:`.steps_model`) and value types
(:mod:`.modeltypes`). Structure is checked here; whether names resolve (a step's template exists, a
tag is declared …) is checked by :mod:`dripflow.core.validate`, which is the way to load a file.

``Workspace.model_dump(mode="json")`` is the canonical form: it loads back to an equal model.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time, timedelta
from email.utils import parseaddr
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, Union

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    PositiveInt,
    StringConstraints,
    Tag,
    model_validator,
)

from dripflow.core.actions_model import Action
from dripflow.core.addresses import InvalidAddress, normalize_email
from dripflow.core.conditions_model import Condition, ConditionNode
from dripflow.core.fieldvalues import FieldType
from dripflow.core.modeltypes import (
    WEEKDAYS,
    ClockTime,
    ContactOrZone,
    DkimSelector,
    Duration,
    EnvVarName,
    FileModel,
    HostName,
    HourRangeText,
    IsoDate,
    LocalDateTime,
    Name,
    NonEmpty,
    Slug,
    TimeZoneName,
    TopicArn,
    Url,
    Weekday,
    describe,
    did_you_mean,
    format_duration,
    parse_duration,
    slugify,
    tagged_union,
    user_error,
)
from dripflow.core.steps_model import EmailStep, Step
from dripflow.core.triggers_model import Trigger

Text = Annotated[str, StringConstraints(min_length=1)]

# --------------------------------------------------------------------------------------------------
# Settings and rules


class WorkspaceSettings(FileModel):
    """``workspace:`` — the account itself."""

    id: Slug
    name: Name
    timezone: TimeZoneName
    base_url: Url | None = None
    default_send_time: ClockTime = time(10, 0)
    physical_address: Name | None = None
    step_slots: Literal[0, 30] = 0
    date_step_grace: Duration = timedelta(hours=2)

    @model_validator(mode="before")
    @classmethod
    def _default_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("id") is None:
            name = data.get("name")
            # without a name only the name is reported missing, not the id as well
            return {**data, "id": slugify(name) if isinstance(name, str) else "workspace"}
        return data


def _reenroll(value: object) -> Literal["never", "always"] | timedelta:
    if value == "never" or value == "always":
        return value
    if isinstance(value, str | timedelta):
        try:
            return parse_duration(value)
        except ValueError:
            pass
    raise user_error(
        "reenroll",
        f"{describe(value)} is not a re-enrollment rule: use never, always or a cooldown such as 30d",
    )


Reenroll = Annotated[
    Literal["never", "always"] | timedelta,
    PlainValidator(_reenroll, json_schema_input_type=str),
    PlainSerializer(
        lambda value: format_duration(value) if isinstance(value, timedelta) else value, when_used="json"
    ),
]
"""``never``, ``always`` or a cooldown (a ``timedelta``) since the last enrollment closed (SPEC S2)."""


class Exclusion(FileModel):
    """A named rule: contacts matching ``if`` are kept out of every sequence (SPEC S4)."""

    name: Name
    if_: Condition = Field(alias="if")


class Frequency(FileModel):
    """At most ``max`` marketing emails per contact in any rolling ``per`` (SPEC D7)."""

    max: PositiveInt
    per: Duration

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.per <= timedelta(0):
            raise user_error("frequency", "per must be a length of time such as 7d", at_key="per")
        return self


class Ruleset(FileModel):
    """``ruleset:`` — re-enrollment, several sequences at once, exclusions, frequency cap."""

    reenroll: Reenroll = "always"
    multi_sequence: Literal["allow", "deny"] = "allow"
    exclusions: tuple[Exclusion, ...] = ()
    frequency: Frequency | None = None


# --------------------------------------------------------------------------------------------------
# Sending


def _address(value: object) -> str:
    if isinstance(value, str):
        _, address = parseaddr(value)
        try:
            if address:
                normalize_email(address)
                return value.strip()
        except InvalidAddress:
            pass
    raise user_error(
        "address", f'{describe(value)} is not an email address (such as "Ann Lee <ann@acme.test>")'
    )


Address = Annotated[str, PlainValidator(_address, json_schema_input_type=str)]
"""An email address, optionally with a display name: ``"Ann Lee <ann@acme.test>"``."""


class Mailbox(FileModel):
    """A sender identity with a daily cap (SPEC D4); no ``daily_cap`` means no cap."""

    id: Name
    from_: Address = Field(alias="from")
    reply_to: Address | None = None
    daily_cap: PositiveInt | None = None
    default: bool = False
    timezone: TimeZoneName | None = None

    @property
    def address(self) -> str:
        """The bare address of ``from``."""
        return parseaddr(self.from_)[1]


class Smtp(FileModel):
    """``delivery.smtp``; the password comes from the environment variable ``password_env``."""

    secret_keys: ClassVar[dict[str, str]] = {"password": "password_env", "pass": "password_env"}
    host: Name
    port: int = Field(587, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: Name | None = None
    password_env: EnvVarName | None = None


class Gateway(FileModel):
    """An outbound webhook (SMS gateway, integrations) signed with the secret in ``secret_env``."""

    secret_keys: ClassVar[dict[str, str]] = {
        "secret": "secret_env",
        "password": "secret_env",
        "token": "secret_env",
    }
    webhook: Url
    secret_env: EnvVarName | None = None


class Dkim(FileModel):
    """One ``delivery.dkim`` entry: email whose From is at ``domain`` is DKIM-signed (RFC 6376) with
    ``selector`` and the RSA private key (PEM) held in the environment variable ``private_key_env``,
    or in the file whose path the variable ``private_key_file_env`` holds: exactly one of the two.
    The SPEC has no DKIM key; this one is ours (docs/delivery.md, "DKIM")."""

    secret_keys: ClassVar[dict[str, str]] = {
        "private_key": "private_key_env",
        "key": "private_key_env",
        "private_key_file": "private_key_file_env",
        "key_file": "private_key_file_env",
    }
    domain: HostName
    selector: DkimSelector
    private_key_env: EnvVarName | None = None
    private_key_file_env: EnvVarName | None = None

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if (self.private_key_env is None) == (self.private_key_file_env is None):
            raise user_error(
                "dkim_key",
                "give exactly one of private_key_env (a variable holding the PEM key) and "
                "private_key_file_env (a variable holding the path of the PEM key file)",
            )
        return self


class SesEvents(FileModel):
    """``delivery.events.ses``: Amazon SES notifications through SNS (``POST /v1/providers/ses``,
    docs/providers.md). With ``topic_arns``, only those topics' messages are accepted (and only
    their subscriptions confirmed); without, any topic whose message AWS signed."""

    topic_arns: tuple[TopicArn, ...] = ()


class SendgridEvents(FileModel):
    """``delivery.events.sendgrid``: SendGrid's Signed Event Webhook (``POST /v1/providers/sendgrid``).
    ``public_key_env`` names the environment variable holding the verification key SendGrid shows
    (base64 DER); events are refused while it is not set."""

    secret_keys: ClassVar[dict[str, str]] = {
        "public_key": "public_key_env",
        "verification_key": "public_key_env",
        "key": "public_key_env",
    }
    public_key_env: EnvVarName


class DeliveryEvents(FileModel):
    """``delivery.events``: what the providers' event webhooks need (SPEC D5, secrets by env name)."""

    ses: SesEvents | None = None
    sendgrid: SendgridEvents | None = None


class Delivery(FileModel):
    """``delivery:`` — where messages go; nothing here means the local capture outbox (SPEC §10).
    ``dkim`` and ``events`` are ours, not the SPEC's: which From domains are signed, and with which
    key (docs/delivery.md); what the providers' event webhooks need (docs/providers.md)."""

    smtp: Smtp | None = None
    sms: Gateway | None = None
    integrations: Gateway | None = None
    dkim: tuple[Dkim, ...] = ()
    events: DeliveryEvents | None = None


class Schedule(FileModel):
    """A send window (SPEC T6); no ``hours`` means all day on the allowed ``days``."""

    id: Name
    timezone: ContactOrZone = "workspace"
    days: Annotated[tuple[Weekday, ...], NonEmpty] = WEEKDAYS
    hours: tuple[HourRangeText, ...] = ()
    excluded_dates: tuple[IsoDate, ...] = ()


class CustomField(FileModel):
    key: Name
    type: FieldType = "text"


class Catalog(FileModel):
    """Things that live in other systems and arrive as events."""

    products: tuple[Name, ...] = ()
    forms: tuple[Name, ...] = ()
    pages: tuple[Name, ...] = ()
    videos: tuple[Name, ...] = ()
    memberships: dict[str, tuple[Name, ...]] = Field(default_factory=dict)
    webinars: tuple[Name, ...] = ()
    calendars: tuple[Name, ...] = ()
    surveys: tuple[Name, ...] = ()
    links: dict[str, Url] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Templates


class TemplateModel(FileModel):
    kind: ClassVar[Literal["email", "sms", "postcard"]]


class EmailTemplate(TemplateModel):
    """``subject``, ``text``, optional ``html``; ``links``: actions run when a link in it is clicked."""

    kind: ClassVar[Literal["email", "sms", "postcard"]] = "email"
    subject: Text
    text: Text
    html: Text | None = None
    links: dict[str, tuple[Action, ...]] = Field(default_factory=dict)


class SmsTemplate(TemplateModel):
    kind: ClassVar[Literal["email", "sms", "postcard"]] = "sms"
    sms: Text


class PostcardTemplate(TemplateModel):
    """A template with ``text`` (and maybe ``html``) but no subject: printed, not mailed."""

    kind: ClassVar[Literal["email", "sms", "postcard"]] = "postcard"
    text: Text
    html: Text | None = None


TemplateNode = EmailTemplate | SmsTemplate | PostcardTemplate


def _template_shape(value: Any) -> Any:
    if not isinstance(value, dict | TemplateModel):
        raise user_error(
            "template_shape",
            f"a template must be a mapping with subject and text, or sms (got {describe(value)})",
        )
    return value


def _pick_template(value: dict[str, Any]) -> type[TemplateModel]:
    if "sms" in value:
        return SmsTemplate
    if value and "subject" not in value and set(value) <= {"text", "html"}:
        return PostcardTemplate
    return EmailTemplate


if TYPE_CHECKING:
    Template = TemplateNode
else:
    Template = tagged_union((EmailTemplate, SmsTemplate, PostcardTemplate), _pick_template, _template_shape)


# --------------------------------------------------------------------------------------------------
# Sequences, automations, broadcasts


StopKeyword = Literal["replied", "clicked"]


def _stop_shape(value: Any) -> Any:
    if isinstance(value, str) and value not in ("replied", "clicked"):
        hint = did_you_mean(value, ("replied", "clicked"))
        example = "{bought_product: course-101}"
        message = f"unknown stop rule '{value}'{hint} (use replied, clicked or a condition such as {example})"
        raise user_error("stop_on", message)
    return value


def _stop_kind(value: Any) -> str:
    return "@keyword" if isinstance(value, str) else "@condition"


if TYPE_CHECKING:
    StopOn = StopKeyword | ConditionNode
else:
    StopOn = Annotated[
        Union[Annotated[StopKeyword, Tag("@keyword")], Annotated[Condition, Tag("@condition")]],  # noqa: UP007
        Discriminator(_stop_kind),
        BeforeValidator(_stop_shape),
    ]
"""``replied``, ``clicked`` or a condition such as ``{bought_product: P}`` (SPEC S12)."""


def _mailbox_choice(value: object) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(item, str) and item.strip() for item in value)
    ):
        return tuple(item.strip() for item in value)
    raise user_error(
        "mailbox", f"must be a mailbox id or a list of them (a pool, SPEC D8), not {describe(value)}"
    )


MailboxChoice = Annotated[
    str | tuple[str, ...],
    PlainValidator(_mailbox_choice, json_schema_input_type=str),
    PlainSerializer(lambda value: value if isinstance(value, str) else list(value)),
]


class Sequence(FileModel):
    """A series of steps (SPEC §5); ``kind: date`` steps fire on calendar dates (T7)."""

    id: Name
    kind: Literal["step", "date"] = "step"
    status: Literal["draft", "active", "paused", "archived"] = "active"
    resume: Literal["continue", "restart"] = "continue"
    mailbox: MailboxChoice | None = None
    schedule: Name | None = None
    timezone: ContactOrZone = "workspace"
    reenroll: Reenroll | None = None
    recipients: Condition | None = None
    start_when: tuple[Trigger, ...] = ()
    stop_on: tuple[StopOn, ...] = ()
    max_loops: int = Field(52, ge=0)
    steps: tuple[Step, ...] = ()

    @property
    def mailbox_pool(self) -> tuple[str, ...]:
        """The sequence's mailbox as a pool (one mailbox is a pool of one; none is empty)."""
        if self.mailbox is None:
            return ()
        return (self.mailbox,) if isinstance(self.mailbox, str) else self.mailbox

    def step(self, step_id: str) -> Step | None:
        return next((step for step in self.steps if step.id == step_id), None)

    @property
    def email_steps(self) -> tuple[EmailStep, ...]:
        return tuple(step for step in self.steps if isinstance(step, EmailStep))


class Automation(FileModel):
    """``when`` an event happens, ``if`` the condition holds, ``then`` run the actions (SPEC §3)."""

    id: Name
    when: Trigger
    if_: Condition | None = Field(None, alias="if")
    then: Annotated[tuple[Action, ...], NonEmpty]


class Broadcast(FileModel):
    """One message to ``audience`` at ``send_at`` (workspace zone, or each contact's with ``local_time``)."""

    id: Name
    send_at: LocalDateTime
    local_time: bool = False
    audience: Condition
    template: Name
    mailbox: Name | None = None
    # Messages per minute: the whole audience is queued at send time (B1), each message not before
    # its turn, so delivery goes out at this pace (decision: docs/decisions.md, Broadcasts).
    throttle: PositiveInt | None = None


class Workspace(FileModel):
    """The whole workspace file (SPEC §2)."""

    workspace: WorkspaceSettings
    ruleset: Ruleset = Ruleset()
    mailboxes: tuple[Mailbox, ...] = ()
    delivery: Delivery = Delivery()
    schedules: tuple[Schedule, ...] = ()
    fields: tuple[CustomField, ...] = ()
    lists: tuple[Name, ...] = ()
    tags: tuple[Name, ...] = ()
    catalog: Catalog = Catalog()
    templates: dict[str, Template] = Field(default_factory=dict)
    sequences: tuple[Sequence, ...] = ()
    automations: tuple[Automation, ...] = ()
    broadcasts: tuple[Broadcast, ...] = ()

    def sequence(self, sequence_id: str) -> Sequence | None:
        return next((item for item in self.sequences if item.id == sequence_id), None)

    def mailbox(self, mailbox_id: str) -> Mailbox | None:
        return next((item for item in self.mailboxes if item.id == mailbox_id), None)

    @property
    def default_mailbox(self) -> Mailbox | None:
        """The mailbox marked ``default``, else the only one there is."""
        marked = [item for item in self.mailboxes if item.default]
        if marked:
            return marked[0]
        return self.mailboxes[0] if len(self.mailboxes) == 1 else None

    def field_type(self, key: str) -> FieldType | None:
        return next((item.type for item in self.fields if item.key == key), None)


def parse_sequence(data: Mapping[str, object], workspace: Workspace) -> Sequence:
    """Check one sequence definition against ``workspace`` (SPEC X2 ``admin.sequence.update``).

    Raises ``WorkspaceInvalid``; see :func:`dripflow.core.validate.parse_sequence`, which this calls.
    """
    from dripflow.core.validate import parse_sequence as check  # validate builds on this module

    return check(data, workspace)
