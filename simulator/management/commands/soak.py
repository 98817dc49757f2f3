"""`manage.py soak`: many calls for a long time against a real server process, with the model
socket dropped at intervals; reports memory over time, calls completed, frames lost and
database rows written versus expected (docs/reliability.md holds a run's report).

It starts everything itself, all on loopback: a realtime stand-in (in this process), the
server (`make run`'s uvicorn command, in a subprocess on a fresh SQLite database unless
--database-url is given), and N simulated Twilio callers that each place call after call.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import environ
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from bridge_project.serve import free_port, server_command, wait_for_port
from simulator.load import rss_mb
from simulator.openai.standin import RealtimeStandIn
from simulator.twilio.caller import SimulatedTwilioCaller
from simulator.twilio.script import timed_call

PUBLIC = "https://soak.example.test"
# Each of these, with text, becomes one transcript row.
TRANSCRIPT_EVENTS = (
    "conversation.item.input_audio_transcription.completed",
    "response.output_audio_transcript.done",
)


@dataclass
class SoakTotals:
    calls_placed: int = 0
    calls_failed: int = 0
    call_ids: list[str] = field(default_factory=list)
    caller_frames_sent: int = 0
    agent_bytes_received: int = 0
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    drops: int = 0


def _start_server(env: dict[str, str], port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """Migrate a database for the run and start `make run`'s server on it."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=settings.BASE_DIR,
        env=env,
        check=True,
    )
    with open(workdir / "server.log", "wb") as log:
        server = subprocess.Popen(
            server_command("uvicorn", "127.0.0.1", port),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
    wait_for_port(port, server, 30, what="the server")
    return server


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--calls", type=int, default=50, help="concurrent callers")
        parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
        parser.add_argument("--call-seconds", type=float, default=60.0, help="length of each call")
        parser.add_argument(
            "--drop-every", type=float, default=60.0, help="model socket drop period (s)"
        )
        parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
        parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        # The stand-in's socket server logs every connection open/close: thousands of lines.
        logging.getLogger("websockets.server").setLevel(logging.WARNING)
        workdir = Path(tempfile.mkdtemp(prefix="bridge-soak-"))
        database_url = options["database_url"] or f"sqlite:///{workdir}/soak.sqlite3"
        # A second alias for reading the run's database back (Django fills in its defaults).
        soak_db = {"default": environ.Env.db_url_config(database_url)}
        connections.databases["soak"] = connections.configure_settings(soak_db)["default"]
        totals = asyncio.run(self._run(workdir, database_url, options))
        self._report(totals, options, workdir)

    # --- the run ------------------------------------------------------------------------------

    async def _run(self, workdir: Path, database_url: str, options: dict) -> SoakTotals:
        port = options["port"] or free_port()
        token = secrets.token_hex(16)
        totals = SoakTotals()
        async with RealtimeStandIn() as standin:
            env = {
                **os.environ,
                "DJANGO_ENV": "development",
                "DATABASE_URL": database_url,
                "RECORDING_STORAGE_PATH": str(workdir / "recordings"),
                "TWILIO_AUTH_TOKEN": token,
                # Its simulated callers are of no particular account: accept them all.
                "TWILIO_ACCOUNT_SID": "",
                "PUBLIC_BASE_URL": PUBLIC,
                "OPENAI_REALTIME_URL": standin.url,
                "OPENAI_API_KEY": "sk-soak-" + secrets.token_hex(12),
                "LOG_LEVEL": "WARNING",
            }
            server = await asyncio.to_thread(_start_server, env, port, workdir)
            try:
                await self._drive(
                    f"http://127.0.0.1:{port}", token, standin, server, totals, options
                )
                await asyncio.sleep(3)  # the last calls' finalization
            finally:
                server.send_signal(signal.SIGTERM)
                await asyncio.to_thread(server.wait, 60)
            totals.standin = standin  # type: ignore[attr-defined]
        return totals

    async def _drive(self, url, token, standin, server, totals, options) -> None:  # type: ignore[no-untyped-def]
        started = time.monotonic()
        deadline = started + options["minutes"] * 60

        async def caller_loop(index: int) -> None:
            await asyncio.sleep(index * 0.02 % 1.0 + index * 0.05)  # spread starts
            while time.monotonic() + 5 < deadline:
                seconds = min(options["call_seconds"], deadline - time.monotonic())
                caller = SimulatedTwilioCaller(url, auth_token=token, public_base_url=PUBLIC)
                totals.calls_placed += 1
                try:
                    report = await caller.call(timed_call(seconds), max_seconds=seconds + 30)
                except Exception as exc:  # a failed call is a finding, not a crash of the run
                    totals.calls_failed += 1
                    self.stderr.write(f"call failed: {type(exc).__name__}: {exc}")
                    continue
                if report.call_id:
                    totals.call_ids.append(report.call_id)
                if report.script_error:
                    totals.calls_failed += 1
                totals.caller_frames_sent += report.frames_sent
                totals.agent_bytes_received += len(caller.agent_audio)

        async def dropper() -> None:
            while time.monotonic() + options["drop_every"] < deadline:
                await asyncio.sleep(options["drop_every"])
                await standin.drop_connections()
                totals.drops += 1

        async def sampler() -> None:
            while time.monotonic() < deadline + 5:
                totals.rss_mb.append((time.monotonic() - started, rss_mb(server.pid)))
                await asyncio.sleep(10)

        side = [asyncio.create_task(dropper()), asyncio.create_task(sampler())]
        await asyncio.gather(*(caller_loop(i) for i in range(options["calls"])))
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)

    # --- the report ---------------------------------------------------------------------------

    def _report(self, totals: SoakTotals, options: dict, workdir: Path) -> None:
        from calls.models import Call, Recording, Transcript

        standin = totals.standin  # type: ignore[attr-defined]
        sent = [event for conn in standin.connections for event in conn.sent]
        expected_lines = sum(
            1
            for event in sent
            if event["type"] in TRANSCRIPT_EVENTS and (event.get("transcript") or "").strip()
        )
        reached = sum(len(conn.audio) for conn in standin.connections) // 160
        streamed = sum(
            len(base64.b64decode(event["delta"]))
            for event in sent
            if event["type"] == "response.output_audio.delta"
        )
        lost_agent = streamed - totals.agent_bytes_received
        calls = Call.objects.using("soak").filter(pk__in=totals.call_ids)
        completed = calls.filter(status="completed").count()
        lines = Transcript.objects.using("soak").filter(call__in=totals.call_ids).count()
        recordings = Recording.objects.using("soak").filter(call__in=totals.call_ids).count()
        rss = [mb for _, mb in totals.rss_mb]
        early = [mb for t, mb in totals.rss_mb if 60 <= t <= 120] or rss[:1]
        samples = ", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in totals.rss_mb)
        out = self.stdout.write
        out(
            f"soak: {options['calls']} concurrent calls for {options['minutes']:.0f} min, "
            f"model socket dropped every {options['drop_every']:.0f} s ({totals.drops} drops)"
        )
        out(
            f"calls placed {totals.calls_placed}, completed in the database {completed}, "
            f"failed {totals.calls_failed}, recordings {recordings}"
        )
        out(
            f"caller frames sent {totals.caller_frames_sent}, appended to the model {reached} "
            "(more than sent when drops happen: untranscribed audio is replayed after each)"
        )
        out(
            f"agent audio streamed by the model {streamed} B, "
            f"received by callers {totals.agent_bytes_received} B (lost {lost_agent} B)"
        )
        out(f"transcript rows {lines}, expected {expected_lines}")
        out(f"server RSS (MB) over time: {samples}")
        if rss:
            out(
                f"RSS min {min(rss):.0f} MB, max {max(rss):.0f} MB, "
                f"minute 1-2 mean {statistics.fmean(early):.0f} MB, last {rss[-1]:.0f} MB"
            )
        out(f"work dir (server log, database, recordings): {workdir}")
