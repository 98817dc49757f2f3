"""`manage.py simulate_call`: place a simulated Twilio call against a running bridge server.

The server under test talks to whatever model its own settings name; this command only plays
Twilio. In development without an OPENAI_API_KEY, `make run` starts a realtime stand-in next
to the server, so a fresh checkout needs just:

    make run                                   # terminal 1
    .venv/bin/python manage.py simulate_call   # terminal 2

If the server was started some other way, point it at a stand-in and let this command run
that stand-in for the duration of the call:

    OPENAI_REALTIME_URL=ws://127.0.0.1:8765/v1/realtime .venv/bin/uvicorn ...
    OPENAI_REALTIME_URL=ws://127.0.0.1:8765/v1/realtime .venv/bin/python manage.py simulate_call

(the command starts a stand-in whenever OPENAI_REALTIME_URL is a loopback ws:// URL where
nothing listens yet).

The call dials (the webhook's `To`) the first phone number of the agent `--agent <slug>` names,
so that agent answers; without it, TWILIO_PHONE_NUMBER if set, else the simulated caller's
default number (which reaches the default agent).

Twilio's REST API: the caller acts on what the server asks of it (a hang-up, a transfer) when
it knows the simulator's Twilio REST stand-in: `--twilio-rest-url`, else TWILIO_API_BASE_URL if
it is on this machine, else the stand-in `make run` starts on port 8766 (TWILIO_STANDIN_PORT)
when no TWILIO_ACCOUNT_SID is set. A loopback URL where nothing listens gets a stand-in run by
this command for the call (the server must then use it). The caller registers its call there
and polls it, and the summary lists the REST requests the server made.

Tools, shown end to end (development only): `--scenario end_call|transfer|webhook` makes sure a
demo agent exists for the scenario (demo-end-call, demo-transfer, demo-webhook: one tool each),
dials it, lets the realtime stand-in's default policy call the tool at the caller's first turn,
and prints what happened: the REST request the server made, the redirect's TwiML and the
whisper, or the webhook request received (the command runs that loopback JSON server, port 8767,
for the call) with its signature header.

The caller can only see what Twilio sees: the audio and marks it gets back, the clears, and
the latency from the end of its speech to the first agent audio. When the server writes to the
same database as this command (the default in development), the command then waits for the
call to be finalized and prints the server's record beside what the caller saw: the transcript
(interrupted and inaudible lines marked), the latency the server measured, and the cost of the
usage the model reported. The admin page has the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from agents.selectors import agent_by_slug, agent_choices, agent_first_number
from calls.models import Call
from simulator import scenarios
from simulator.openai.standin import DEFAULT_PORT, RealtimeStandIn
from simulator.twilio import rest
from simulator.twilio.caller import CallReport, SimulatedTwilioCaller, WebhookRejected
from simulator.twilio.rest import TwilioRestStandIn
from simulator.twilio.script import Step, standard_call, timed_call

DEFAULT_REALTIME_HOST = "api.openai.com"
# The server finishes a call after the caller hangs up (last transcriptions, recording).
RECORD_WAIT_S = 20.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STATUS_CALLBACK_PATH = "/twilio/call-status"


def standin_port_setting() -> int:
    """REALTIME_STANDIN_PORT (settings, then environment), else the stand-in's default."""
    value = getattr(settings, "REALTIME_STANDIN_PORT", None) or os.environ.get(
        "REALTIME_STANDIN_PORT"
    )
    return int(value) if value else DEFAULT_PORT


def port_listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def loopback_http_port(url: str) -> int | None:
    """The port of an http:// URL on this machine (a REST stand-in's), else None."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        return None
    return parts.port or 80


def rest_standin_port_setting() -> int:
    value = os.environ.get("TWILIO_STANDIN_PORT")
    return int(value) if value else rest.DEFAULT_PORT


def loopback_standin_port(realtime_url: str) -> int | None:
    """The port of a ws:// realtime URL on this machine (a stand-in's), else None."""
    parts = urlsplit(realtime_url)
    if parts.scheme != "ws" or parts.hostname not in LOOPBACK_HOSTS:
        return None
    return parts.port or 80


def agent_number(slug: str) -> str:
    """The number that reaches agent `slug`: its first phone number."""
    try:
        agent = agent_by_slug(slug=slug)
        if agent is None:
            known = ", ".join(known_slug for known_slug, _ in agent_choices(limit=20))
            raise CommandError(f"no agent with the slug '{slug}' (agents: {known or 'none yet'})")
        number = agent_first_number(agent=agent)
    except DatabaseError as exc:
        raise CommandError(f"cannot read the agents ({exc}): run `manage.py migrate`") from None
    if number is None:
        raise CommandError(
            f"agent '{slug}' has no phone number to dial: give it one in the admin "
            "(Agents) or with PATCH /api/agents/<slug>"
        )
    return number


def dialled_number(agent_slug: str | None) -> str | None:
    """The `To` of the call: the agent's first number, else TWILIO_PHONE_NUMBER, else None
    (the simulated caller's default)."""
    if agent_slug:
        return agent_number(agent_slug)
    return settings.TWILIO_PHONE_NUMBER or None


class Command(BaseCommand):
    help = "Place a simulated Twilio call against a running bridge server and summarise it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", help="the server's base URL (default: http://127.0.0.1:$PORT)")
        parser.add_argument(
            "--public-base-url",
            help="the URL Twilio would call, i.e. the server's PUBLIC_BASE_URL (default: --url)",
        )
        parser.add_argument(
            "--seconds",
            type=float,
            help="call length: caller turns until then (default: the standard two-turn call)",
        )
        parser.add_argument(
            "--barge-in",
            action="store_true",
            help="talk over the agent's second reply (with the standard call)",
        )
        parser.add_argument(
            "--agent",
            metavar="SLUG",
            help="dial this agent's first phone number, so that it answers (default: "
            "TWILIO_PHONE_NUMBER, else a number that reaches the default agent)",
        )
        parser.add_argument(
            "--standin-port",
            type=int,
            help="run a realtime stand-in on this port for the call (the server must use it)",
        )
        parser.add_argument(
            "--twilio-rest-url",
            metavar="URL",
            help="the Twilio REST stand-in the server uses (default: TWILIO_API_BASE_URL when "
            "on this machine, else make run's on port 8766 if it listens)",
        )
        parser.add_argument(
            "--scenario",
            choices=sorted(scenarios.SCENARIOS),
            help="show a tool end to end with a demo agent (development only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The summary is the output; per-connection lines of the stand-in's server are noise.
        logging.getLogger("websockets").setLevel(logging.WARNING)
        url = (options["url"] or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
        options["webhook_port"] = None
        if options["scenario"]:
            options["agent"] = self._scenario_agent(options)
        # Before the server check: a wrong slug is the clearer error.
        options["to_number"] = dialled_number(options["agent"])
        self._check_server(url)
        script = self._script(options["seconds"], options["barge_in"])
        limit = (options["seconds"] or 60.0) + 30.0
        self.webhooks: list[scenarios.ReceivedWebhook] = []
        self.rest_requests: list[dict[str, Any]] = []
        report = asyncio.run(self._call(url, options, script, limit))
        self._summarise(url, report)
        self._summarise_tools(report, options)

    def _scenario_agent(self, options: dict[str, Any]) -> str:
        """The scenario's demo agent (made or updated here): its slug."""
        if settings.DJANGO_ENV == "production":
            raise CommandError("--scenario makes demo agents: development only")
        if options["agent"]:
            raise CommandError("--scenario dials its own demo agent: leave out --agent")
        scenario = scenarios.SCENARIOS[options["scenario"]]
        webhook_url = ""
        if scenario.name == "webhook":
            port = scenarios.DEFAULT_WEBHOOK_PORT
            options["webhook_port"] = port if not port_listening("127.0.0.1", port) else 0
            options["webhook_port"] = options["webhook_port"] or _free_port()
            webhook_url = f"http://127.0.0.1:{options['webhook_port']}{scenarios.WEBHOOK_PATH}"
        try:
            agent = scenarios.ensure_demo_agent(scenario, webhook_url=webhook_url)
        except (DatabaseError, ValidationError) as exc:
            raise CommandError(f"cannot make the demo agent {scenario.slug}: {exc}") from None
        tools = ", ".join(tool["type"] for tool in agent.tools)
        self.stdout.write(
            f"Scenario {scenario.name}: {scenario.shows}.\n"
            f"  demo agent {agent.slug} ({scenario.number}), tools: {tools}"
        )
        return agent.slug

    def _check_server(self, url: str) -> None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return  # it answers: good enough, the webhook will tell the rest
        except OSError as exc:
            raise CommandError(
                f"no server answers at {url} ({exc}). Start one with `make run`."
            ) from None

    def _script(self, seconds: float | None, barge_in: bool) -> list[Step]:
        if seconds is None:
            return standard_call(barge_in=barge_in)
        return timed_call(seconds)

    async def _call(
        self, url: str, options: dict[str, Any], script: list[Step], limit: float
    ) -> CallReport:
        token = settings.TWILIO_AUTH_TOKEN or None
        if token is None:
            self.stdout.write(
                "TWILIO_AUTH_TOKEN is empty: sending no X-Twilio-Signature. The server must run "
                "in development with no auth token too, or it will answer 403."
            )
        dial = {"to_number": options["to_number"]} if options["to_number"] else {}
        rest_url, rest_standin = self._rest_standin(options["twilio_rest_url"])
        self.rest_url = rest_url
        caller = SimulatedTwilioCaller(
            url,
            auth_token=token,
            public_base_url=options["public_base_url"] or url,
            # A server with TWILIO_ACCOUNT_SID set refuses other accounts' calls.
            account_sid=settings.TWILIO_ACCOUNT_SID or None,
            twilio_rest_url=rest_url,
            # A scenario's call is closed as Twilio closes it (a transferred call is ended by
            # its status callback, not by the bridge).
            status_callback_path=STATUS_CALLBACK_PATH if options["scenario"] else None,
            **dial,
        )
        standin = self._standin(options["standin_port"])
        webhook = (
            scenarios.WebhookServer(port=options["webhook_port"])
            if options["webhook_port"]
            else None
        )
        async with contextlib.AsyncExitStack() as running:
            for server in (standin, rest_standin, webhook):
                if server is not None:
                    await running.enter_async_context(server)
            if standin is not None:
                self.stdout.write(f"Realtime stand-in running at {standin.url} for this call.")
            if rest_standin is not None:
                self.stdout.write(
                    f"Twilio REST stand-in running at {rest_standin.url} for this call."
                )
            if webhook is not None:
                self.webhooks = webhook.requests
            params = caller.webhook_params
            agent = f" (agent {options['agent']})" if options["agent"] else ""
            self.stdout.write(f"Calling {params['To']}{agent} at {url} as {params['From']} ...")
            try:
                report = await caller.call(script, max_seconds=limit)
            except WebhookRejected as exc:
                raise CommandError(f"the incoming-call webhook refused the call: {exc}") from None
            except OSError as exc:
                raise CommandError(f"the media stream could not be opened: {exc}") from None
            except RuntimeError as exc:
                raise CommandError(str(exc)) from None
            if standin is not None:
                # Let the server hang up on its model first: stopping the stand-in under a live
                # session would look like a dropped socket (and a reconnect) to the bridge.
                with contextlib.suppress(TimeoutError):
                    await standin.wait_until(lambda: not standin.open_connections(), 3.0)
            if rest_url is not None:
                # Read while a stand-in run here still answers (it stops with this block).
                self.rest_requests = await asyncio.to_thread(
                    _rest_requests, rest_url, report.call_sid
                )
            return report

    def _standin(self, requested_port: int | None) -> RealtimeStandIn | None:
        """A stand-in to run for the call, or None when the server's model is elsewhere."""
        port = requested_port or loopback_standin_port(settings.OPENAI_REALTIME_URL)
        if port is None:
            self._explain_model()
            return None
        if port_listening("127.0.0.1", port):
            self.stdout.write(f"A realtime stand-in already listens on port {port}; using it.")
            return None
        if requested_port is not None:
            self.stdout.write(
                "The server must use this stand-in: start it with "
                f"OPENAI_REALTIME_URL=ws://127.0.0.1:{port}/v1/realtime"
            )
        return RealtimeStandIn(port=port)

    def _rest_standin(
        self, requested_url: str | None
    ) -> tuple[str | None, TwilioRestStandIn | None]:
        """The REST stand-in's URL for the caller (None: the server talks to Twilio, or to no
        one), and a stand-in to run for the call when the URL is on this machine but nothing
        listens there yet."""
        if requested_url:
            url = requested_url.rstrip("/")
        elif loopback_http_port(settings.TWILIO_API_BASE_URL) is not None:
            url = settings.TWILIO_API_BASE_URL.rstrip("/")
        elif not settings.TWILIO_ACCOUNT_SID:
            # make run's stand-in: the server was given its URL, this process was not.
            port = rest_standin_port_setting()
            if not port_listening("127.0.0.1", port):
                return None, None
            return f"http://127.0.0.1:{port}", None
        else:
            return None, None
        port = loopback_http_port(url)
        if port is None or port_listening("127.0.0.1", port):
            return url, None  # elsewhere, or already running: used as it is
        self.stdout.write(
            f"The server must send its Twilio REST requests here: start it with "
            f"TWILIO_API_BASE_URL={url}"
        )
        return url, TwilioRestStandIn(port=port)

    def _explain_model(self) -> None:
        host = urlsplit(settings.OPENAI_REALTIME_URL).hostname
        if host == DEFAULT_REALTIME_HOST and not settings.OPENAI_API_KEY:
            self.stdout.write(
                "No OPENAI_API_KEY: a server started with `make run` bridges to its own local "
                f"stand-in. Started otherwise, give it OPENAI_REALTIME_URL=ws://127.0.0.1:"
                f"{standin_port_setting()}/v1/realtime and pass --standin-port "
                f"{standin_port_setting()}."
            )
        else:
            self.stdout.write(f"The server's model is at {settings.OPENAI_REALTIME_URL}.")

    def _summarise(self, url: str, report: CallReport) -> None:
        out = self.stdout.write
        out("")
        out(f"Call {report.call_sid}  ended by {report.ended_by} (close code {report.close_code})")
        out(f"  frames sent:      {report.frames_sent} ({report.frames_sent * 0.02:.1f} s)")
        audio = f"{report.agent_audio_s:.2f} s received, {report.played_s:.2f} s played"
        out(f"  agent audio:      {audio}")
        out(f"  marks:            {report.marks_received} received, {report.marks_echoed} echoed")
        clears = ", ".join(f"{ms / 1000:.2f} s" for ms in report.clears_ms) or "none"
        out(f"  clears (barge-in): {clears}")
        latencies = ", ".join(f"{ms:.0f} ms" for ms in report.latencies_ms) or "no reply heard"
        out(f"  latency, end of caller speech -> first agent audio: {latencies}")
        if report.latencies_ms:
            avg, worst = statistics.fmean(report.latencies_ms), max(report.latencies_ms)
            out(f"  latency as the caller measured it: avg {avg:.0f} ms, max {worst:.0f} ms")
        if report.script_error:
            out(self.style.WARNING(f"  script: {report.script_error}"))
        for problem in report.protocol_errors[:10]:
            out(self.style.WARNING(f"  protocol problem: {problem}"))
        if report.call_id:
            self._summarise_record(report.call_id)
            out(f"  transcript and analytics: {url}/admin/calls/call/{report.call_id}/change/")

    def _summarise_tools(self, report: CallReport, options: dict[str, Any]) -> None:
        """What the server asked of Twilio's REST API and of the webhook, as they saw it."""
        out = self.stdout.write
        if self.rest_url is not None:
            out(f"  Twilio REST requests the server made ({len(self.rest_requests)}):")
            for request in self.rest_requests:
                form = ", ".join(
                    f"{k}={v[0] if len(v) == 1 else v}" for k, v in request["form"].items()
                )
                out(f"    {request['method']} {request['path']}  {form}  -> {request['status']}")
        elif options["scenario"] in ("end_call", "transfer"):
            out(
                self.style.WARNING(
                    "  No Twilio REST stand-in: the server's hang-up or transfer went to "
                    f"{settings.TWILIO_API_BASE_URL}. Start the server with `make run` (no "
                    "TWILIO_ACCOUNT_SID) to see it here."
                )
            )
        if report.ended_by_rest:
            out("  The call was ended through Twilio's REST API: Twilio stopped the media stream.")
        if report.redirected_twiml:
            out(f"  redirected to: {report.redirected_twiml}")
        for number, twiml in report.whisper_twiml.items():
            out(f"  whisper to {number} before connecting: {twiml}")
        for webhook in self.webhooks:
            out(f"  webhook request received: {webhook.method} {webhook.path}")
            out(f"    X-Bridge-Signature: {webhook.headers.get('x-bridge-signature', '(none)')}")
            out(f"    body: {webhook.body.decode('utf-8', 'replace')}")
        if options["webhook_port"] and not self.webhooks:
            out(self.style.WARNING("  the webhook was not called"))

    def _summarise_record(self, call_id: str) -> None:
        """The server's record of the call, once finalized (if it is in this database)."""
        out = self.stdout.write
        call = _finished_call(call_id, RECORD_WAIT_S)
        if call is None:
            out(
                "  (the server's record is not in this command's database, or not finished "
                "yet: see the admin page)"
            )
            return
        out(f"  server's record ({call.status}, {call.end_reason}):")
        for line in call.transcripts.order_by("start_ms", "sequence"):
            marks = " [interrupted]" if line.interrupted else ""
            marks += " [inaudible]" if line.inaudible else ""
            out(f"    {line.start_ms / 1000:6.2f} s  {line.speaker:<6} {line.text}{marks}")
        a = call.analytics
        if a.latency_ms_avg is not None:
            out(
                f"  latency as the server measured it: avg {a.latency_ms_avg:.0f} ms, "
                f"max {a.latency_ms_max:.0f} ms (end of caller speech -> agent audio playing)"
            )
        out(
            f"  usage: audio in {a.input_audio_tokens} (cached {a.cached_audio_tokens}), "
            f"text in {a.input_text_tokens} (cached {a.cached_text_tokens}), "
            f"audio out {a.output_audio_tokens}, text out {a.output_text_tokens} tokens"
        )
        out(f"  cost at list price: ${a.estimated_cost_usd:.6f}")
        tool_calls = getattr(call, "tool_calls", None)
        for tool_call in tool_calls.all() if tool_calls is not None else ():
            out(
                f"  tool call {tool_call.name} ({tool_call.status}) at "
                f"{tool_call.start_ms / 1000:.2f} s: {tool_call.arguments} -> {tool_call.output}"
            )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rest_requests(rest_url: str, call_sid: str) -> list[dict[str, Any]]:
    """The Twilio API requests the REST stand-in received for the call (its own record)."""
    query = urllib.parse.urlencode({"CallSid": call_sid})
    try:
        with urllib.request.urlopen(f"{rest_url}/_simulator/requests?{query}", timeout=5) as answer:  # noqa: S310
            return list(orjson.loads(answer.read())["requests"])
    except (OSError, ValueError, KeyError):
        return []


def _finished_call(call_id: str, wait_s: float) -> Call | None:
    """The call with its transcript and analytics once the server has finalized it."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            call = Call.objects.select_related("analytics").filter(pk=call_id).first()
        except DatabaseError:
            return None  # no such table here: the server writes to another database
        if call is None:
            return None
        if call.ended_at is not None and call.end_reason:
            return call
        time.sleep(0.25)
    return None
