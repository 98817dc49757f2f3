"""`manage.py loadtest`: N concurrent simulated Twilio calls against a running bridge server.

Each call posts the signed incoming-call webhook, then streams real-time paced 20 ms mu-law
frames and echoes marks like Twilio. The model side is a lean stand-in run by this command,
Realtime on /v1/realtime and GPT-Live on /v1/live/sessions (with `--echo`, every appended frame
comes straight back as output audio, loading both directions; without it the stand-in only
listens, as a quiet Realtime agent does), so the server must be pointed at it:

    export OPENAI_REALTIME_URL=ws://127.0.0.1:8765/v1/realtime           # terminal 1
    export OPENAI_LIVE_URL=ws://127.0.0.1:8765/v1/live/sessions
    make run
    .venv/bin/python manage.py loadtest --calls 100 --seconds 20 --echo   # terminal 2

Which protocol a call's model session speaks is its agent's (the default agent's, for the
dialled number the simulated caller uses); the report counts the sessions of each.

Every frame is timed caller -> stand-in (inbound) and stand-in -> caller (outbound); the report
gives p50/p95/p99/max both ways, frames lost or reordered, failed calls, the server process's
CPU (percent of one core, from /proc, when it runs on this machine) and peak RSS, and the
generator's own lag. A run whose generator lag p99 exceeds 5 ms is marked invalid. See
docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulator.load import LoadConfig, LoadResult, run_load, summary
from simulator.management.commands.simulate_call import loopback_standin_port, port_listening
from simulator.openai.standin import DEFAULT_PORT


def fast_event_loop() -> None:
    """uvloop when installed: the generator must stay well ahead of the server it measures."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class Command(BaseCommand):
    help = "Load-test a running bridge server with concurrent simulated Twilio calls."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", help="the server's base URL (default: http://127.0.0.1:$PORT)")
        parser.add_argument("--calls", type=int, default=10, help="concurrent calls")
        parser.add_argument("--seconds", type=float, default=20.0, help="measured time")
        parser.add_argument(
            "--ramp", type=float, help="seconds over which calls start (default: calls / 50)"
        )
        parser.add_argument(
            "--echo",
            action="store_true",
            help="the stand-in echoes every frame back as audio (without it: listen-only)",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--end-half",
            action="store_true",
            help="hang up every other call mid-run and time the rest while those end",
        )
        parser.add_argument(
            "--public-base-url", help="the server's PUBLIC_BASE_URL (default: --url)"
        )
        parser.add_argument(
            "--standin-port",
            type=int,
            help="port of the stand-in this command runs (default: OPENAI_REALTIME_URL's port)",
        )
        parser.add_argument("--server-pid", type=int, help="default: the process on --url's port")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("websockets").setLevel(logging.WARNING)
        if options["calls"] < 1 or options["calls"] > 65535 or options["seconds"] <= 0:
            raise CommandError("--calls must be 1..65535 and --seconds positive")
        url = (options["url"] or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
        config = LoadConfig(
            url=url,
            calls=options["calls"],
            seconds=options["seconds"],
            ramp_s=options["ramp"] if options["ramp"] is not None else options["calls"] / 50,
            echo=options["echo"],
            auth_token=settings.TWILIO_AUTH_TOKEN or None,
            account_sid=settings.TWILIO_ACCOUNT_SID or None,
            public_base_url=(options["public_base_url"] or url).rstrip("/"),
            standin_port=self._standin_port(options["standin_port"]),
            server_pid=options["server_pid"],
            end_half=options["end_half"],
        )
        fast_event_loop()
        progress = (lambda line: None) if options["json"] else self._progress
        result = asyncio.run(run_load(config, progress))
        self._print(result, as_json=options["json"])

    def _standin_port(self, requested: int | None) -> int:
        port = (
            requested
            or loopback_standin_port(settings.OPENAI_REALTIME_URL)
            or loopback_standin_port(settings.OPENAI_LIVE_URL)
            or DEFAULT_PORT
        )
        if port_listening("127.0.0.1", port):
            raise CommandError(
                f"port {port} is taken: this command runs its own stand-in there. Pick another "
                "with --standin-port and start the server with OPENAI_REALTIME_URL="
                "ws://127.0.0.1:<port>/v1/realtime (and OPENAI_LIVE_URL="
                "ws://127.0.0.1:<port>/v1/live/sessions)"
            )
        return port

    def _progress(self, line: str) -> None:
        self.stderr.write(line)

    def _print(self, result: LoadResult, *, as_json: bool) -> None:
        if as_json:
            sys.stdout.buffer.write(result.as_json() + b"\n")
            sys.stdout.flush()
        else:
            for line in summary(result):
                self.stdout.write(line)
