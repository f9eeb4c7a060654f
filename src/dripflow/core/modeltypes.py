"""Building blocks shared by the workspace models: the base model and the small value types.

Every value type here parses what a marketer writes ("10:00", "2h", "09:00-17:00", "2026-12-24")
into a typed Python value (``time``, ``timedelta`` …) and serialises it back to the same text, so
``model_dump(mode="json")`` of any model loads again unchanged (SPEC §2).

Problems are raised as ``PydanticCustomError`` whose type starts with ``df_`` and whose message is
already written for a person; :mod:`dripflow.core.validate` shows it as is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    NonNegativeInt,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# --------------------------------------------------------------------------------------------------
# Messages


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` — did you mean 'x'?`` when a declared name is close to ``word``, else ``""``."""
    options = sorted(set(choices))
    if word in options:  # spelled right; the trouble is elsewhere (a quoted number, say)
        return ""
    lowered = {choice.lower(): choice for choice in options}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f" — did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def unknown_name(what: str, name: str, choices: Iterable[str], within: str = "") -> str:
    """``unknown tag 'custmer' — did you mean 'customer'?`` (or what is declared, when nothing is close).

    ``within`` narrows the scope: ``" in sequence 'onboarding'"`` for a step.
    """
    options = sorted(set(choices))
    hint = did_you_mean(name, options)
    if hint:
        return f"unknown {what} '{name}'{within}{hint}"
    if not options:
        plural = what + ("es" if what.endswith(("s", "x")) else "s")
        return f"unknown {what} '{name}'{within} — no {plural} are declared"
    shown = ", ".join(options[:8]) + (", …" if len(options) > 8 else "")
    return f"unknown {what} '{name}'{within} (declared: {shown})"


def user_error(kind: str, message: str, **context: object) -> PydanticCustomError:
    """A validation error whose message is final; ``kind`` is prefixed ``df_``.

    The template is only ``{message}`` (placed last in the context) so that braces in user text are
    never taken for placeholders.
    """
    return PydanticCustomError(f"df_{kind}", "{message}", {**context, "message": message})


# --------------------------------------------------------------------------------------------------
# The base model


class FileModel(BaseModel):
    """Base of every workspace model: immutable, strict about keys, dumps with the file's key names.

    An unknown key is reported with the closest allowed one ("unknown key 'temlate' — did you mean
    'template'?"); a literal secret (``password:``) is refused with the ``*_env`` key to use instead.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
        coerce_numbers_to_str=True,
    )

    # literal key → the key naming an environment variable instead (SPEC §2 "secrets only by name")
    secret_keys: ClassVar[dict[str, str]] = {}

    @classmethod
    def file_keys(cls) -> list[str]:
        """The keys this model accepts in the file."""
        return [info.alias or name for name, info in cls.model_fields.items()]

    @model_validator(mode="wrap")
    @classmethod
    def _explain_unknown_keys(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(exc.title, cls._rewrite(exc)) from None

    @classmethod
    def _rewrite(cls, exc: ValidationError) -> list[InitErrorDetails]:
        details: list[InitErrorDetails] = []
        for error in exc.errors():
            loc, kind = error["loc"], error["type"]
            if kind == "extra_forbidden" and len(loc) == 1:
                key = str(loc[0])
                if key in cls.secret_keys:
                    message = (
                        f"a {key} must not be written in the workspace file: put it in an environment "
                        f"variable and give that variable's name as {cls.secret_keys[key]}"
                    )
                    err = user_error("literal_secret", message, key=key)
                else:
                    message = f"unknown key '{key}'{did_you_mean(key, cls.file_keys())}"
                    err = user_error("unknown_key", message, key=key)
                details.append({"type": err, "loc": loc, "input": None})
            elif kind.startswith("df_"):
                ctx = dict(error.get("ctx") or {})
                message = str(ctx.pop("message", error["msg"]))
                details.append(
                    {"type": user_error(kind[3:], message, **ctx), "loc": loc, "input": error["input"]}
                )
            else:
                item: InitErrorDetails = {"type": kind, "loc": loc, "input": error["input"]}
                if "ctx" in error:
                    item["ctx"] = error["ctx"]
                details.append(item)
        return details


# --------------------------------------------------------------------------------------------------
# Tagged unions


def tagged_union(
    members: tuple[type[BaseModel], ...],
    pick: Callable[[dict[str, Any]], type[BaseModel] | None],
    shape: Callable[[Any], Any],
) -> Any:
    """A union that chooses its member with ``pick`` after ``shape`` has refused malformed input.

    Every member is tagged ``@ClassName``; those tags appear in pydantic error locations and the
    validator drops them when it turns a location into a file path.
    """
    tagged = tuple(Annotated[member, Tag(f"@{member.__name__}")] for member in members)

    def discriminate(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return f"@{type(value).__name__}"
        chosen = pick(value) if isinstance(value, dict) else None
        return f"@{chosen.__name__}" if chosen is not None else None

    return Annotated[Union[tagged], Discriminator(discriminate), BeforeValidator(shape)]  # noqa: UP007


def single_key(value: Any, what: str, example: str) -> str:
    """The one key of a ``{key: argument}`` mapping (a condition, an action), or a problem saying so."""
    kind = f"{what.replace(' ', '_')}_shape"
    a_what = f"an {what}" if what[:1] in "aeiou" else f"a {what}"
    if not isinstance(value, dict):
        raise user_error(
            kind, f"{a_what} must be a mapping with one key, such as {example} (got {describe(value)})"
        )
    if len(value) != 1:
        found = ", ".join(f"'{key}'" for key in value) or "nothing"
        hint = "; combine several with all: [...] or any: [...]" if what == "condition" else ""
        raise user_error(kind, f"{a_what} must have exactly one key, such as {example} (found {found}){hint}")
    return str(next(iter(value)))


# --------------------------------------------------------------------------------------------------
# Names

T = TypeVar("T")


def require_items(value: tuple[T, ...]) -> tuple[T, ...]:
    """An after-check (so it stays quiet when the items themselves are wrong) that a list is not empty."""
    if not value:
        raise user_error("empty", "must list at least one item")
    return value


NonEmpty = AfterValidator(require_items)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CompareOp = Literal["eq", "ne", "lt", "lte", "gt", "gte"]

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_SELECTOR_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_SELECTOR = re.compile(rf"{_SELECTOR_LABEL}(?:\.{_SELECTOR_LABEL})*")


def slugify(text: str) -> str:
    """``Acme Coaching`` → ``acme-coaching``."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())) or "workspace"


def _plain(kind: str, check: Callable[[str], str]) -> PlainValidator:
    """A validator taking text only (a number or a list here is a mistake, not something to coerce)."""

    def validate(value: object) -> str:
        if not isinstance(value, str):
            raise user_error(kind, f"must be text, not {describe(value)}")
        return check(value)

    return PlainValidator(validate, json_schema_input_type=str)


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise user_error(
            "slug",
            f"'{value}' is not a slug: use lower-case letters, digits and dashes (such as {slugify(value)})",
        )
    return value


def _env_name(value: str) -> str:
    if not _ENV.fullmatch(value):
        # the value is not repeated: it may be the secret itself, written here by mistake
        raise user_error(
            "env_name",
            "must be the name of an environment variable (letters, digits and _, such as SMTP_PASSWORD)",
        )
    return value


def ascii_domain(value: str) -> str | None:
    """A mail domain as it is written on the wire and in DNS: lower case, IDNA (``bücher.test`` →
    ``xn--bcher-kva.test``), no trailing dot; None when it is not a host name with a dot in it."""
    text = value.strip().rstrip(".").lower()
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return text if len(text) <= 253 and _HOST.fullmatch(text) else None


def _host_name(value: str) -> str:
    domain = ascii_domain(value)
    if domain is None:
        raise user_error("host_name", f"'{value}' is not a domain name such as acme.test")
    return domain


def _dkim_selector(value: str) -> str:
    # RFC 6376 §3.1: the selector is one or more DNS labels (``s2026``, ``mail.2026``), looked up
    # as SELECTOR._domainkey.DOMAIN
    if not _SELECTOR.fullmatch(value) or len(value) > 63:
        raise user_error(
            "dkim_selector",
            f"'{value}' is not a DKIM selector: use letters, digits, _ and -, such as s2026",
        )
    return value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise user_error("url", f"'{value}' is not a web address (it should start with https://)")
    return value


_TOPIC_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:sns:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:[A-Za-z0-9_-]{1,256}(?:\.fifo)?"
)


def _topic_arn(value: str) -> str:
    if not _TOPIC_ARN.fullmatch(value):
        raise user_error(
            "topic_arn",
            f"'{value}' is not an SNS topic ARN (such as arn:aws:sns:us-east-1:123456789012:ses-events)",
        )
    return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_zone(value: str) -> str:
    """An IANA zone name such as ``America/New_York``; raises with the closest name otherwise."""
    if value not in _zones():
        raise user_error(
            "timezone", f"unknown time zone '{value}'{did_you_mean(value, _zones())}", zone=value
        )
    return value


Slug = Annotated[str, _plain("slug", _slug)]
EnvVarName = Annotated[str, _plain("env_name", _env_name)]
Url = Annotated[str, _plain("url", _url)]
HostName = Annotated[str, _plain("host_name", _host_name)]
"""A domain name, kept in its wire form (:func:`ascii_domain`)."""
DkimSelector = Annotated[str, _plain("dkim_selector", _dkim_selector)]
TopicArn = Annotated[str, _plain("topic_arn", _topic_arn)]
TimeZoneName = Annotated[str, _plain("timezone", check_zone)]


def _zone_or(*keywords: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        return value if value in keywords else check_zone(value)

    return check


ContactOrZone = Annotated[str, _plain("timezone", _zone_or("contact", "workspace"))]
"""``contact`` (the contact's zone, else the workspace's), ``workspace``, or an IANA name (SPEC T1)."""

# --------------------------------------------------------------------------------------------------
# Times, dates and durations

_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def describe(value: object) -> str:
    """A short, safe description of a wrong value for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def parse_clock(value: object) -> time:
    """``"09:30"`` → ``time(9, 30)``."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and (match := _CLOCK.fullmatch(value.strip())):
        return time(int(match[1]), int(match[2]))
    raise user_error("clock", f'{describe(value)} is not a time of day: use HH:MM, 24-hour (such as "09:30")')


def format_clock(value: time) -> str:
    return "24:00" if value == time.max else value.strftime("%H:%M")


def parse_iso_date(value: object) -> date:
    """``"2026-12-24"`` → ``date(2026, 12, 24)``."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()) if len(value.strip()) == 10 else _bad_date(value)
        except ValueError:
            pass
    return _bad_date(value)


def _bad_date(value: object) -> date:
    raise user_error("date", f'{describe(value)} is not a valid date: use YYYY-MM-DD (such as "2026-12-24")')


def parse_local_datetime(value: object) -> datetime:
    """``"2026-11-27 09:00"`` → a naive wall-clock ``datetime`` (its zone is given elsewhere, T1)."""
    if isinstance(value, datetime):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if isinstance(value, str):
        text = value.strip()
        try:
            return datetime.strptime(text, "%Y-%m-%d %H:%M")
        except ValueError:
            pass
    raise user_error("datetime", f'{describe(value)} is not a date and time: use "YYYY-MM-DD HH:MM"')


def parse_duration(value: object) -> timedelta:
    """``"2h"``, ``"30m"``, ``"7d"``, ``"2w"``, ``"1d12h"`` → ``timedelta``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.strip() and (match := _DURATION.fullmatch(value.strip().lower())):
        weeks, days, hours, minutes = (int(part) if part else 0 for part in match.groups())
        if max(weeks, days, hours, minutes) <= 100_000:
            return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)
    raise user_error(
        "duration", f"{describe(value)} is not a duration: use a number and a unit, such as 30m, 2h, 7d or 2w"
    )


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` (``timedelta(days=7)`` → ``"7d"``; zero → ``"0m"``)."""
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text or "0m"


ClockTime = Annotated[
    time,
    PlainValidator(parse_clock, json_schema_input_type=str),
    PlainSerializer(format_clock, when_used="json"),
]
IsoDate = Annotated[
    date,
    PlainValidator(parse_iso_date, json_schema_input_type=str),
    PlainSerializer(date.isoformat, when_used="json"),
]
LocalDateTime = Annotated[
    datetime,
    PlainValidator(parse_local_datetime, json_schema_input_type=str),
    PlainSerializer(lambda value: value.strftime("%Y-%m-%d %H:%M"), when_used="json"),
]
Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration, json_schema_input_type=str),
    PlainSerializer(format_duration, when_used="json"),
]


@dataclass(frozen=True)
class HourRange:
    """An open window of a schedule, ``"09:00-17:00"``; ``end`` is ``time.max`` for ``24:00``."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{format_clock(self.start)}-{format_clock(self.end)}"


def parse_hour_range(value: object) -> HourRange:
    if isinstance(value, HourRange):
        return value
    if isinstance(value, str) and value.count("-") == 1:
        first, last = (part.strip() for part in value.split("-"))
        start = parse_clock(first)
        end = time.max if last == "24:00" else parse_clock(last)
        if end <= start:
            raise user_error("hour_range", f"the hours '{value}' end before they start")
        return HourRange(start, end)
    raise user_error(
        "hour_range", f'{describe(value)} is not a range of hours: use "HH:MM-HH:MM" (such as "09:00-17:00")'
    )


HourRangeText = Annotated[
    HourRange, PlainValidator(parse_hour_range, json_schema_input_type=str), PlainSerializer(str)
]


class Delay(FileModel):
    """A wait, ``{days, hours, minutes}``, each a whole number ≥ 0 (SPEC §2 `after`, T3-T5).

    ``after: 0`` and a duration text (``"4h"``) are accepted too.
    """

    days: NonNegativeInt = 0
    hours: NonNegativeInt = 0
    minutes: NonNegativeInt = 0

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if data == 0 and not isinstance(data, bool):
            return {}
        if isinstance(data, str):
            span = parse_duration(data)
            hours, seconds = divmod(span.seconds, 3600)
            return {"days": span.days, "hours": hours, "minutes": seconds // 60}
        if isinstance(data, int | float) and not isinstance(data, bool):
            raise user_error("delay", "give the delay with its unit, such as {days: 2} or {hours: 4}")
        return data

    @property
    def span(self) -> timedelta:
        """The delay as a length of time (days counting as 24 h)."""
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)

    @property
    def whole_days(self) -> bool:
        """True for ``{days: N}`` with no hours or minutes: it fires at a time of day (T4)."""
        return self.hours == 0 and self.minutes == 0


class SignedDelay(FileModel):
    """An offset from a date field; may be negative (``{days: -1}``: the day before, SPEC T7)."""

    days: int = 0
    hours: int = 0
    minutes: int = 0

    @property
    def span(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)
