"""`python -m bench smtp`: N messages delivered by the outbox to a local aiosmtpd sink in another
process, against a bare aiosmtplib client with the same concurrency sending the same prebuilt
messages (issue 7; target: our delivery at least 80% of the bare client's rate).

Delivery: a file SQLite database with a workspace whose ``delivery.smtp`` names the sink; N
contacts on a list and one broadcast to it, queued by the engine
(:func:`~dripflow.engine.broadcasts.send_due_broadcasts`), so the outbox holds N ``queued``
messages, as the worker leaves it. Then :func:`~dripflow.delivery.outbox.deliver_pending` with the
workspace's :class:`~dripflow.delivery.transport.SmtpTransport` (built by ``transport_for``, as
``dripflow worker`` does) sends them: claim, build, send and record, all timed. Every row must end
``sent``, and the sink must have received N messages, each recipient exactly once.

Floor: the same messages, built beforehand with ``delivery/mime.py`` and flattened to bytes
(outside the timed part), sent to a fresh sink by plain ``aiosmtplib.SMTP.sendmail`` on as many
connections as our delivery has sends in flight (the transport's pool size, under
``deliver_due``'s concurrency), each connection sending one message after another.
``ratio`` = delivery rate / floor rate. Beside the rates: this process's CPU per message (all
threads) for each side, the sink's, and the load average, since the machine may be shared.

The sink is an aiosmtpd server in a child process (``python -c``), which accepts and counts; it
prints its port on start and its counts when told to stop.

``--dkim``: the workspace gets a ``delivery.dkim`` entry for its mailbox's domain, with a 2048-bit
RSA key made in this process and handed over in an environment variable, as in production; every
message is then DKIM-signed as the outbox builds it (docs/delivery.md). The floor's prebuilt
messages are signed too (untimed), so both sides send the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import inspect
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiosmtplib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, func, select

from bench.report import finish, say
from dripflow.core.clock import SystemClock, VirtualClock
from dripflow.core.validate import load_workspace_text
from dripflow.delivery import outbox
from dripflow.delivery.dkim import sign_from, signers_for
from dripflow.delivery.mime import build_message, envelope_recipient, envelope_sender
from dripflow.delivery.outbox import deliver_due, deliver_pending
from dripflow.delivery.transport import SmtpTransport, transport_for
from dripflow.engine.broadcasts import send_due_broadcasts
from dripflow.engine.context import Ctx, load_rules
from dripflow.engine.messages import unsubscribe_url
from dripflow.store.contacts import ContactData, ContactRepo
from dripflow.store.database import make_engine, transaction
from dripflow.store.migrate import upgrade
from dripflow.store.tables import Message
from dripflow.store.workspaces import apply_workspace

WS_ID = "bench"
APPLIED = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SEND = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TARGET_RATIO = 0.8
DKIM_ENV = "DRIPFLOW_BENCH_DKIM_KEY"
SETUP_CHUNK = 10_000
ROOT = Path(__file__).resolve().parent.parent

WORKSPACE = """\
workspace: {{id: bench, name: Bench, timezone: UTC, physical_address: "1 Main St, Springfield",
            base_url: "https://mail.bench.test"}}
mailboxes:
  - {{id: news, from: "Bench News <news@bench.test>", reply_to: "help@bench.test", default: true}}
delivery:
  smtp: {{host: "127.0.0.1", port: {port}, security: none}}{dkim}
lists: [newsletter]
templates:
  spring:
    subject: "Spring news for {{{{ contact.first_name }}}}"
    text: |
      Hi {{{{ contact.first_name }}}},

      Spring is here, and so are three things we think you will like: a new guide to planning
      your season, a short video tour of what changed this month, and an early look at the
      summer programme. Reply to this email if you have a question; a person reads every answer.

      The Bench team
    html: |
      <html><body>
      <p>Hi {{{{ contact.first_name }}}},</p>
      <p>Spring is here, and so are three things we think you will like: a new guide to planning
      your season, a short video tour of what changed this month, and an early look at the
      summer programme.</p>
      <p>Reply to this email if you have a question; a person reads every answer.</p>
      <p>The Bench team</p>
      </body></html>
broadcasts:
  - {{id: spring, send_at: "2026-03-02 09:00", audience: {{on_list: newsletter}}, template: spring}}
"""

# The sink: run by `python -c` in a child process. It prints its port, serves until a line arrives
# on stdin, then prints its counts as one JSON line.
SINK = """\
import asyncio, json, sys, time
from aiosmtpd.smtp import SMTP

class Sink:
    def __init__(self):
        self.messages = 0
        self.bytes = 0
        self.signed = 0
        self.recipients = {}

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        self.bytes += len(envelope.content)
        self.signed += envelope.content.startswith(b"DKIM-Signature: ")
        for rcpt in envelope.rcpt_tos:
            self.recipients[rcpt] = self.recipients.get(rcpt, 0) + 1
        return "250 Message accepted for delivery"

async def main():
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, hostname="sink.bench.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    cpu = time.process_time()
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time() - cpu
    server.close()
    counts = list(sink.recipients.values())
    print(json.dumps({
        "messages": sink.messages,
        "bytes": sink.bytes,
        "signed": sink.signed,
        "recipients": len(counts),
        "repeated": sum(1 for n in counts if n > 1),
        "cpu_s": round(cpu, 2),
    }), flush=True)

asyncio.run(main())
"""


class Sink:
    """The aiosmtpd sink in a child process; :meth:`stop` returns its counts."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            self.port = int(self._stdout().readline())
        except ValueError:
            self.kill()
            raise SystemExit("the SMTP sink did not start") from None

    def _stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def stop(self) -> dict[str, Any]:
        """Tell the sink to stop and read its counts."""
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        counts: dict[str, Any] = json.loads(self._stdout().readline())
        self.process.wait(timeout=30)
        return counts

    def kill(self) -> None:
        """Make sure the child is gone (after :meth:`stop`, or on a failure)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class Prebuilt:
    sender: str
    recipient: str
    data: bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=20_000, help="messages sent (default 20,000)")
    parser.add_argument("--no-floor", action="store_true", help="run our delivery only")
    parser.add_argument(
        "--dkim",
        action="store_true",
        help="DKIM-sign every message (rsa-sha256, a 2048-bit key made in-process)",
    )
    parser.add_argument(
        "--profile", default=None, help="write a cProfile (pstats) of the delivery run, all threads, here"
    )


def run(args: argparse.Namespace) -> None:
    messages = 300 if args.quick else args.messages
    if args.dkim:
        os.environ[DKIM_ENV] = _dkim_key()
    sinks: list[Sink] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            sink = Sink()
            sinks.append(sink)
            engine = make_engine(url)
            try:
                started = time.perf_counter()
                _setup(url, engine, messages, sink.port, args.dkim)
                transport = _transport(engine)
                prebuilt = _prebuild(engine)
                say(
                    f"{messages} messages queued by a broadcast and {len(prebuilt)} prebuilt for the floor "
                    f"in {time.perf_counter() - started:.2f}s"
                )
                inflight = _in_flight(transport)
                say(
                    f"delivery: deliver_pending through SmtpTransport ({transport.max_connections} "
                    f"connections, {inflight} sends in flight) to the sink on port {sink.port}"
                    + (", DKIM-signed (rsa-sha256, 2048 bits)" if args.dkim else "")
                )
                cpu = time.process_time()
                seconds = _deliver(engine, transport, args.profile)
                cpu = time.process_time() - cpu
                received = sink.stop()
                statuses = _statuses(engine)
            finally:
                engine.dispose()
        _check("delivery", received, messages, args.dkim)
        if statuses != {"sent": messages}:
            raise SystemExit(f"delivery: wrong outcome, message statuses {statuses}")
        rate = messages / seconds
        say(
            f"  {messages} messages in {seconds:.2f}s: {rate:.0f} messages/s, {cpu * 1000 / messages:.2f} ms "
            f"of this process's CPU per message; the sink received {received}"
        )
        figures: dict[str, Any] = {
            "messages": messages,
            "dkim": bool(args.dkim),
            "connections": transport.max_connections,
            "in_flight": inflight,
            "seconds": round(seconds, 3),
            "messages_per_s": round(rate, 1),
            "received": received["messages"],
            "message_bytes": round(received["bytes"] / messages),
            "cpu_ms_per_message": round(cpu * 1000 / messages, 3),
            "sink_cpu_ms_per_message": round(received["cpu_s"] * 1000 / messages, 3),
            "load_average": round(os.getloadavg()[0], 2),
        }
        if not args.no_floor:
            sink = Sink()
            sinks.append(sink)
            say(f"floor: bare aiosmtplib, {inflight} connections, prebuilt bytes, sink on port {sink.port}")
            floor_cpu = time.process_time()
            floor_seconds = asyncio.run(_floor(prebuilt, sink.port, inflight))
            floor_cpu = time.process_time() - floor_cpu
            floor_received = sink.stop()
            _check("floor", floor_received, messages, args.dkim)
            floor_rate = messages / floor_seconds
            say(
                f"  {messages} messages in {floor_seconds:.2f}s: {floor_rate:.0f} messages/s, "
                f"{floor_cpu * 1000 / messages:.2f} ms of CPU per message; the sink received {floor_received}"
            )
            figures.update(
                floor_seconds=round(floor_seconds, 3),
                floor_messages_per_s=round(floor_rate, 1),
                floor_received=floor_received["messages"],
                ratio=round(rate / floor_rate, 3),
                target_ratio=TARGET_RATIO,
                floor_cpu_ms_per_message=round(floor_cpu * 1000 / messages, 3),
                floor_sink_cpu_ms_per_message=round(floor_received["cpu_s"] * 1000 / messages, 3),
            )
            say(f"ratio {figures['ratio']:.2f} (target >= {TARGET_RATIO})")
    finally:
        for sink in sinks:
            sink.kill()
    finish("smtp", figures)


def _check(name: str, received: dict[str, Any], messages: int, dkim: bool) -> None:
    if received["messages"] != messages or received["recipients"] != messages or received["repeated"]:
        raise SystemExit(f"{name}: the sink received {received}, expected {messages} messages, one each")
    if received["signed"] != (messages if dkim else 0):
        raise SystemExit(f"{name}: {received['signed']} of {messages} messages arrived DKIM-signed")


# -- setup ----------------------------------------------------------------------------------------


def _dkim_key() -> str:
    """A 2048-bit RSA private key (PKCS#8 PEM), made now: the bench signs with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _setup(url: str, engine: Engine, messages: int, port: int, dkim: bool = False) -> None:
    """The workspace, N contacts on the list and the broadcast queued: N ``queued`` messages."""
    upgrade(url)
    signing = (
        f"\n  dkim: [{{domain: bench.test, selector: bench, private_key_env: {DKIM_ENV}}}]" if dkim else ""
    )
    with transaction(engine) as session:
        model = load_workspace_text(WORKSPACE.format(port=port, dkim=signing), "bench.yaml")
        apply_workspace(session, model, now=APPLIED, actor="bench")
    for first in range(0, messages, SETUP_CHUNK):
        numbers = range(first, min(first + SETUP_CHUNK, messages))
        with transaction(engine) as session:
            repo = ContactRepo(session, WS_ID)
            repo.upsert_many(
                [ContactData(email=f"c{n}@bench.test", first_name=f"C{n}") for n in numbers], at=APPLIED
            )
            repo.subscribe_many([f"c{n}@bench.test" for n in numbers], "newsletter", at=APPLIED)
    with transaction(engine) as session:
        ctx = Ctx(session, WS_ID, load_rules(session, WS_ID), VirtualClock(SEND))
        queued = send_due_broadcasts(ctx)
    if queued != messages:
        raise SystemExit(f"the broadcast queued {queued} messages, expected {messages}")


def _transport(engine: Engine) -> SmtpTransport:
    """The workspace's transport, as the worker builds it (``DRIPFLOW_SMTP_URL`` ignored: the bench
    must never send anywhere but to its sink)."""
    with transaction(engine) as session:
        transport = transport_for(load_rules(session, WS_ID).workspace.delivery, environ={})
    if transport is None:
        raise SystemExit("the bench workspace has no SMTP delivery")
    return transport


def _in_flight(transport: SmtpTransport) -> int:
    """The sends ``deliver_due`` has in flight when ``deliver_pending`` calls it: its
    ``concurrency`` (by default the transport's connection count), at most the connections."""
    default = inspect.signature(deliver_due).parameters["concurrency"].default
    assert default is None or isinstance(default, int)
    return min(transport.max_connections, default or transport.max_connections)


def _prebuild(engine: Engine) -> list[Prebuilt]:
    """The floor's messages: each queued row built as the outbox builds it, flattened to bytes."""
    now = SystemClock().now()
    with transaction(engine) as session:
        ctx = Ctx(session, WS_ID, load_rules(session, WS_ID), SystemClock())
        rows = session.scalars(
            select(Message)
            .where(Message.workspace_id == WS_ID, Message.status == "queued")
            .order_by(Message.id)
        )
        signers = signers_for(ctx.workspace.delivery)  # --dkim: sign as the outbox does
        prebuilt = []
        for row in rows:
            url = unsubscribe_url(ctx, row.key, row.contact_id, row.sequence_id)
            data = build_message(row, ctx.workspace, date=now, unsubscribe_url=url).as_bytes()
            sender = envelope_sender(row, ctx.workspace)
            prebuilt.append(Prebuilt(sender, envelope_recipient(row), sign_from(signers, sender, data)))
    return prebuilt


def _statuses(engine: Engine) -> dict[str, int]:
    with transaction(engine) as session:
        return {
            status: count
            for status, count in session.execute(
                select(Message.status, func.count())
                .where(Message.workspace_id == WS_ID)
                .group_by(Message.status)
            )
        }


# -- our delivery ---------------------------------------------------------------------------------


def _deliver(engine: Engine, transport: SmtpTransport, profile: str | None) -> float:
    """``deliver_pending`` as the worker calls it, on the wall clock; returns its seconds."""
    profilers: list[cProfile.Profile] = []
    restore: list[tuple[str, Any]] = []
    if profile:
        # cProfile sees one thread: the event loop's here (sending, and writing the outcomes), plus
        # each claim in the thread that runs it (``asyncio.to_thread``), merged into one file.
        lock = threading.Lock()

        def profiled(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                profiler = cProfile.Profile()
                with lock:
                    profilers.append(profiler)
                return profiler.runcall(fn, *args, **kwargs)

            return wrapper

        for name in ("claim_due",):
            original = getattr(outbox, name)
            restore.append((name, original))
            setattr(outbox, name, profiled(original))
    main = cProfile.Profile() if profile else None
    started = time.perf_counter()
    try:
        if main is not None:
            main.enable()
        taken = deliver_pending(engine, WS_ID, SystemClock(), transport)
        if main is not None:
            main.disable()
    finally:
        for name, original in restore:
            setattr(outbox, name, original)
    seconds = time.perf_counter() - started
    if profile and main is not None:
        stats = pstats.Stats(main)
        for profiler in profilers:
            stats.add(profiler)
        stats.dump_stats(profile)
        say(f"  profile written to {profile} (event loop + {len(profilers)} claims in threads)")
    say(f"  deliver_pending claimed {taken} messages")
    return seconds


# -- the floor ------------------------------------------------------------------------------------


async def _floor(prebuilt: list[Prebuilt], port: int, connections: int) -> float:
    """Plain aiosmtplib: ``connections`` sessions, each sending the next prebuilt message in turn."""
    queue = iter(prebuilt)

    async def session() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await client.connect()
        try:
            for item in queue:  # a shared iterator: each message is taken by one session
                await client.sendmail(item.sender, [item.recipient], item.data)
        finally:
            await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(session() for _ in range(connections)))
    return time.perf_counter() - started
