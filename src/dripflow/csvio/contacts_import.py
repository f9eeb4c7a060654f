"""Streaming CSV import of contacts (SPEC §10 `contacts import`, L4).

The file is read once, a batch at a time, so memory stays flat whatever its size. Each batch is
validated in Python, then written with a handful of bulk statements. The whole file is applied in one
transaction: an import either lands completely (minus the rejected rows, which are reported with their
line numbers) or not at all.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import available_timezones

from sqlalchemy import Engine

from dripflow.core.addresses import InvalidAddress, check_email, normalize_phone
from dripflow.core.errors import UserError
from dripflow.core.fieldvalues import FieldType, coerce_field
from dripflow.csvio.columns import ADDRESS_COLUMNS, CONTACT_COLUMNS, header_key
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.database import transaction

BATCH_SIZE = 2000
SAMPLE_SIZE = 20  # how many rejected rows and suggestions a report keeps in memory to show

ProgressCallback = Callable[[int], None]


class _CsvReader(Protocol):
    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...
    def __next__(self) -> list[str]: ...


@dataclass(frozen=True)
class RowIssue:
    """A rejected row, or an accepted one with a likely email typo, by its line in the file."""

    line: int
    email: str
    message: str


@dataclass
class ImportReport:
    """What an import did; keeps counts plus a bounded sample so a huge file keeps memory flat."""

    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: int = 0
    suggested: int = 0
    ignored_columns: tuple[str, ...] = ()
    rejected_sample: list[RowIssue] = field(default_factory=list)
    suggestion_sample: list[RowIssue] = field(default_factory=list)

    def reject(self, issue: RowIssue) -> None:
        self.rejected += 1
        if len(self.rejected_sample) < SAMPLE_SIZE:
            self.rejected_sample.append(issue)

    def suggest(self, issue: RowIssue) -> None:
        self.suggested += 1
        if len(self.suggestion_sample) < SAMPLE_SIZE:
            self.suggestion_sample.append(issue)


class _CountingReader(io.RawIOBase):
    """Counts bytes as the CSV parser reads them, to drive a progress bar by file position."""

    def __init__(self, raw: IO[bytes], on_bytes: ProgressCallback | None) -> None:
        self._raw = raw
        self._on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return len(data)


class _RowParser:
    """Turns one CSV record into a :class:`ContactData`, or a reason to reject it."""

    def __init__(self, header: list[str], fields: Mapping[str, FieldType]) -> None:
        self.keys = [header_key(cell) for cell in header]
        known = {*CONTACT_COLUMNS, *ADDRESS_COLUMNS, *fields}
        self.ignored = tuple(cell for cell, key in zip(header, self.keys, strict=True) if key not in known)
        if "email" not in self.keys:
            raise UserError(f"the CSV has no email column (columns: {', '.join(header) or 'none'})")
        self.fields = fields
        self.zones = available_timezones()

    def parse(self, record: list[str]) -> tuple[ContactData, str | None]:
        """Raises ValueError with the reason the row cannot be imported."""
        values = {key: cell for key, cell in zip(self.keys, record, strict=False) if cell.strip()}
        if len(record) > len(self.keys):
            raise ValueError(f"{len(record)} cells but the header has {len(self.keys)} columns")
        checked = check_email(values.get("email", ""))
        phone = values.get("phone")
        zone = values.get("timezone", "").strip() or None
        if zone is not None and zone not in self.zones:
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name such as America/New_York)")
        address = {key: values[key].strip() for key in ADDRESS_COLUMNS if key in values}
        custom: dict[str, Any] = {}
        for key, kind in self.fields.items():
            if key in values:
                try:
                    custom[key] = coerce_field(kind, values[key])
                except ValueError as exc:
                    raise ValueError(f"field {key}: {exc}") from None
        data = ContactData(
            email=checked.email,
            phone=normalize_phone(phone) if phone else None,
            first_name=_text(values, "first_name"),
            last_name=_text(values, "last_name"),
            timezone=zone,
            source=_text(values, "source"),
            owner=_text(values, "owner"),
            address=address or None,
            fields=custom or None,
            email_suggestion=checked.suggestion,
        )
        return data, checked.suggestion


def _text(values: Mapping[str, str], key: str) -> str | None:
    value = values.get(key, "").strip()
    return value or None


def import_contacts(
    engine: Engine,
    workspace_id: str,
    path: Path,
    *,
    now: datetime,
    fields: Mapping[str, FieldType],
    list_key: str | None = None,
    rejects: IO[str] | None = None,
    on_bytes: ProgressCallback | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import a CSV file of contacts, creating or updating them by email.

    ``rejects``, when given, receives every rejected row as CSV with its line number and reason.
    """
    report = ImportReport()
    reject_writer = csv.writer(rejects) if rejects is not None else None
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    with raw, transaction(engine) as session:
        text = io.TextIOWrapper(
            io.BufferedReader(_CountingReader(raw, on_bytes)), encoding="utf-8-sig", newline=""
        )
        reader = csv.reader(text)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _unreadable(path, 1, exc) from None
        if header is None:
            raise UserError(f"{path} is empty: expected a header row with at least an email column")
        parser = _RowParser(header, fields)
        report.ignored_columns = parser.ignored
        if reject_writer is not None:
            reject_writer.writerow(["line", "reason", *header])
        repo = ContactRepo(session, workspace_id)
        for batch in _batches(reader, path, batch_size, first_line=reader.line_num + 1):
            accepted: dict[str, ContactData] = {}
            for line, record in batch:
                report.rows += 1
                try:
                    data, suggestion = parser.parse(record)
                except (ValueError, InvalidAddress) as exc:
                    email = (
                        record[parser.keys.index("email")] if len(record) > parser.keys.index("email") else ""
                    )
                    report.reject(RowIssue(line, email, str(exc)))
                    if reject_writer is not None:
                        reject_writer.writerow([line, str(exc), *record])
                    continue
                assert data.email is not None
                if suggestion is not None:
                    report.suggest(RowIssue(line, data.email, f"did you mean {suggestion}?"))
                # The same address twice in a file: the later row wins, as if imported after.
                accepted[data.email] = _merge(accepted.get(data.email), data)
            if accepted:
                created, updated = repo.upsert_many(list(accepted.values()))
                report.created += created
                report.updated += updated
                if list_key is not None:
                    repo.subscribe_many(list(accepted), list_key, now)
    return report


def _merge(earlier: ContactData | None, later: ContactData) -> ContactData:
    if earlier is None:
        return later
    merged = {
        name: getattr(later, name) if getattr(later, name) is not None else getattr(earlier, name)
        for name in ContactData.__dataclass_fields__
    }
    return ContactData(**merged)


def _batches(
    reader: _CsvReader, path: Path, size: int, first_line: int
) -> Iterator[list[tuple[int, list[str]]]]:
    """Records with the line each starts on (a quoted cell may span lines), ``size`` at a time."""
    batch: list[tuple[int, list[str]]] = []
    line = first_line
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue
            batch.append((start, record))
            if len(batch) >= size:
                yield batch
                batch = []
    except (csv.Error, UnicodeDecodeError) as exc:
        raise _unreadable(path, line, exc) from None
    if batch:
        yield batch


def _unreadable(path: Path, line: int, exc: csv.Error | UnicodeDecodeError) -> UserError:
    """The error for a file that cannot be read on, naming the line where it goes wrong."""
    if isinstance(exc, UnicodeDecodeError):
        # Text is decoded a chunk ahead of the parser, so find the offending line in the bytes.
        return UserError(f"{path}:{_first_undecodable_line(path)}: the file is not UTF-8 text")
    return UserError(f"{path}:{line}: malformed CSV: {exc}")


def _first_undecodable_line(path: Path) -> int:
    decoder = codecs.getincrementaldecoder("utf-8")()
    number = 0
    with path.open("rb") as raw:
        for line in raw:
            number += 1
            try:
                decoder.decode(line)
            except UnicodeDecodeError:
                return number
    return max(number, 1)  # a multi-byte character cut off at the very end
