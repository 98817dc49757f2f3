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

Outbound, `--outbound --to +15550009999 [--answered-by human|machine|busy|no-answer|failed]
[--agent slug] [--machine-detection hangup|voicemail|off] [--voicemail-message TEXT]`: the
agent dials out, with no credentials. The command plans the callee at the Twilio REST stand-in
(`POST /_simulator/callees`; `make run` starts it dialling back to the server), places the call
through the product's own `POST /api/calls` with a DRF token of a dedicated user `simulator`
(made here, with calls.add_call and calls.view_call), then follows the call at the stand-in
(`/_simulator/calls/{CallSid}`) and at the server (`GET /api/calls/{id}`) until it is over, and
prints its status, answered_by, end_reason, transcript and, for a machine, the message left.
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
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from rest_framework.authtoken.models import Token

from agents.selectors import agent_by_slug, agent_choices, agent_first_number
from calls.models import Call
from simulator import scenarios
from simulator.openai.standin import DEFAULT_PORT, RealtimeStandIn
from simulator.twilio import rest
from simulator.twilio.callee import OUTCOMES, DialOut
from simulator.twilio.caller import (
    CallReport,
    SimulatedTwilioCaller,
    WebhookRejected,
    simulator_request,
)
from simulator.twilio.rest import TwilioRestStandIn
from simulator.twilio.script import Step, standard_call, timed_call

DEFAULT_REALTIME_HOST = "api.openai.com"
# The server finishes a call after the caller hangs up (last transcriptions, recording).
RECORD_WAIT_S = 20.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STATUS_CALLBACK_PATH = "/twilio/call-status"
# Outbound: the number dialled by default, the API user the command acts as, and how long
# it follows a call (ringing, AMD, the conversation or the message, the server's wrap-up).
DEFAULT_OUTBOUND_TO = "+15550009999"
SIMULATOR_USER = "simulator"
SIMULATOR_PERMISSIONS = ("add_call", "view_call")
OUTBOUND_LIMIT_S = 150.0
OUTBOUND_POLL_S = 0.5
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


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
        outbound = parser.add_argument_group("outbound (--outbound: the agent dials out)")
        outbound.add_argument(
            "--outbound",
            action="store_true",
            help="place an outbound call through POST /api/calls and follow it",
        )
        outbound.add_argument("--to", default=DEFAULT_OUTBOUND_TO, help="the number dialled")
        outbound.add_argument(
            "--answered-by",
            choices=OUTCOMES,
            default="human",
            help="who answers at the stand-in (default: human)",
        )
        outbound.add_argument(
            "--machine-detection",
            choices=("hangup", "voicemail", "off"),
            help="the API's machine_detection (default: the API's)",
        )
        outbound.add_argument("--voicemail-message", help="what the agent leaves a machine")
        outbound.add_argument(
            "--ring-seconds", type=float, default=1.0, help="how long the callee's phone rings"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The summary is the output; per-connection lines of the stand-in's server are noise.
        logging.getLogger("websockets").setLevel(logging.WARNING)
        url = (options["url"] or f"http://127.0.0.1:{settings.PORT}").rstrip("/")
        if options["outbound"]:
            self._outbound(url, options)
            return
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

    # --- outbound: the agent dials out ------------------------------------------------------------

    def _outbound(self, url: str, options: dict[str, Any]) -> None:
        """Plan the callee, place the call through POST /api/calls, follow it, summarise."""
        if options["scenario"]:
            raise CommandError("--scenario is for inbound calls: leave it out with --outbound")
        self._check_server(url)
        token = _api_token()
        body: dict[str, Any] = {"to": options["to"]}
        if options["agent"]:
            body["agent"] = options["agent"]
        if options["machine_detection"]:
            body["machine_detection"] = options["machine_detection"]
        if options["voicemail_message"] is not None:
            body["voicemail_message"] = options["voicemail_message"]
        asyncio.run(self._outbound_call(url, options, token, body))

    async def _outbound_call(
        self, url: str, options: dict[str, Any], token: str, body: dict[str, Any]
    ) -> None:
        rest_url, rest_standin = self._rest_standin(options["twilio_rest_url"])
        if rest_url is None:
            raise CommandError(
                "no Twilio REST stand-in to dial the call: start the server with `make run` "
                "(no TWILIO_ACCOUNT_SID) or pass --twilio-rest-url"
            )
        if rest_standin is not None:
            # Run here for the call: it dials back to the server it serves.
            rest_standin.dial_out = DialOut(url, public_base_url=options["public_base_url"])
        async with contextlib.AsyncExitStack() as running:
            if rest_standin is not None:
                try:
                    await running.enter_async_context(rest_standin)
                except OSError as exc:
                    raise CommandError(
                        f"cannot run a Twilio REST stand-in at {rest_url}: {exc}"
                    ) from None
                self.stdout.write(f"Twilio REST stand-in running at {rest_standin.url}.")
            await asyncio.to_thread(self._plan_callee, rest_url, options)
            agent = f" (agent {body['agent']})" if "agent" in body else ""
            self.stdout.write(
                f"Placing an outbound call to {body['to']}{agent} through {url}/api/calls; "
                f"the stand-in answers as: {options['answered_by']} ..."
            )
            call = await asyncio.to_thread(_place_call, url, token, body)
            self.stdout.write(
                f"  call {call['id']} queued (CallSid {call.get('call_sid')}, {call['status']})"
            )
            leg, record = await self._follow(url, rest_url, token, call)
        self._summarise_outbound(url, call, leg, record)

    def _plan_callee(self, rest_url: str, options: dict[str, Any]) -> None:
        form = {
            "To": options["to"],
            "AnsweredBy": options["answered_by"],
            "RingSeconds": f"{options['ring_seconds']:g}",
        }
        try:
            status, answer = simulator_request(rest_url, "POST", "callees", form)
        except OSError as exc:
            raise CommandError(
                f"the Twilio REST stand-in at {rest_url} is not reachable: {exc}"
            ) from None
        if status != 201:
            raise CommandError(f"the stand-in refused the callee plan ({status}): {answer}")
        if not answer.get("dial_out"):
            raise CommandError(
                f"the Twilio REST stand-in at {rest_url} does not dial out (it was started "
                "without --server-url): restart the server with `make run`"
            )

    async def _follow(
        self, url: str, rest_url: str, token: str, call: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Poll the stand-in's leg and the server's record until both are over (or the time
        limit): print each status callback as the stand-in sends it."""
        call_sid = call.get("call_sid")
        leg: dict[str, Any] = {}
        record = call
        shown = 0
        deadline = time.monotonic() + OUTBOUND_LIMIT_S
        leg_done_at: float | None = None
        while time.monotonic() < deadline:
            if call_sid:
                leg = await asyncio.to_thread(_leg_view, rest_url, call_sid) or leg
            callbacks = (leg.get("outbound") or {}).get("callbacks", [])
            for callback in callbacks[shown:]:
                self.stdout.write(f"  {_describe_callback(callback)}")
            shown = len(callbacks)
            record = await asyncio.to_thread(_call_record, url, token, call["id"]) or record
            leg_done = not call_sid or (leg.get("outbound") or {}).get("done", False)
            if leg_done and leg_done_at is None:
                leg_done_at = time.monotonic()
            server_done = record.get("status") in FINAL_CALL_STATUSES and bool(
                record.get("ended_at")
            )
            if leg_done and server_done:
                break
            # The server finishes a call after its end (transcription, recording): not forever.
            if leg_done_at is not None and time.monotonic() - leg_done_at > RECORD_WAIT_S:
                self.stdout.write(self.style.WARNING("  the server has not closed the call"))
                break
            await asyncio.sleep(OUTBOUND_POLL_S)
        else:
            self.stdout.write(self.style.WARNING(f"  stopped following after {OUTBOUND_LIMIT_S}s"))
        return leg, record

    def _summarise_outbound(
        self, url: str, call: dict[str, Any], leg: dict[str, Any], record: dict[str, Any]
    ) -> None:
        out = self.stdout.write
        outbound = leg.get("outbound") or {}
        out("")
        out(f"Outbound call {record.get('id', call['id'])}  CallSid {record.get('call_sid')}")
        out(f"  status:       {record.get('status')}")
        out(f"  answered_by:  {record.get('answered_by') or '-'}")
        out(f"  end_reason:   {record.get('end_reason') or '-'}")
        if outbound:
            out(
                f"  at the stand-in: {leg.get('status')}, AMD said "
                f"{outbound.get('answered_by') or '-'}, ended by {outbound.get('ended_by')}"
            )
            if outbound.get("plan", {}).get("answered_by") == "machine":
                out(f"  message left on the machine: {outbound.get('message_ms', 0) / 1000:.2f} s")
            for error in outbound.get("errors", [])[:5]:
                out(self.style.WARNING(f"  stand-in: {error}"))
        lines = record.get("transcripts") or []
        out(f"  transcript ({len(lines)} lines):")
        for line in lines:
            marks = " [interrupted]" if line.get("interrupted") else ""
            marks += " [inaudible]" if line.get("inaudible") else ""
            start = (line.get("start_ms") or 0) / 1000
            out(f"    {start:6.2f} s  {line.get('speaker', ''):<6} {line.get('text', '')}{marks}")
        out(f"  the call in the admin: {url}/admin/calls/call/{call['id']}/change/")


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


# --- outbound helpers (HTTP to the server's API and the stand-in's /_simulator/) ---------------


def _api_token() -> str:
    """The DRF token of the dedicated `simulator` user, made with just the permissions an
    outbound call needs (calls.add_call, calls.view_call)."""
    try:
        user, _ = get_user_model().objects.get_or_create(username=SIMULATOR_USER)
        permissions = Permission.objects.filter(
            content_type__app_label="calls", codename__in=SIMULATOR_PERMISSIONS
        )
        user.user_permissions.add(*permissions)
        token, _ = Token.objects.get_or_create(user=user)
    except DatabaseError as exc:
        raise CommandError(f"cannot make the API user ({exc}): run `manage.py migrate`") from None
    return str(token.key)


def _json_request(
    url: str, method: str, *, token: str | None = None, body: Any = None
) -> tuple[int, Any]:
    """(status, JSON answer) of one request to the server's API; OSError if unreachable."""
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310
            return answer.status, _loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, _loads(error.read())


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"error": {"code": "not_json", "message": raw[:300].decode("utf-8", "replace")}}


def _place_call(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/calls: the call (201), else CommandError with the API's code and message."""
    try:
        status, answer = _json_request(f"{url}/api/calls", "POST", token=token, body=body)
    except OSError as exc:
        raise CommandError(f"no server answers at {url} ({exc})") from None
    if status == 201 and isinstance(answer, dict) and "id" in answer:
        return answer
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    details = f" {error['details']}" if error.get("details") else ""
    raise CommandError(
        f"the API refused the call ({status} {error.get('code', '?')}): "
        f"{error.get('message', answer)}{details}"
    )


def _call_record(url: str, token: str, call_id: str) -> dict[str, Any] | None:
    with contextlib.suppress(OSError):
        status, answer = _json_request(f"{url}/api/calls/{call_id}", "GET", token=token)
        if status == 200 and isinstance(answer, dict):
            return answer
    return None


def _leg_view(rest_url: str, call_sid: str) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        status, view = simulator_request(rest_url, "GET", f"calls/{call_sid}")
        if status == 200:
            return view
    return None


def _describe_callback(callback: dict[str, Any]) -> str:
    """One line per request the stand-in made to the server, as Twilio would have."""
    params = callback.get("params", {})
    answered = callback.get("status") or callback.get("error")
    path = urlsplit(callback.get("url", "")).path
    if callback.get("kind") == "status":
        what = f"status callback {params.get('CallStatus')}"
    elif callback.get("kind") == "amd":
        what = f"AMD: {params.get('AnsweredBy')} after {params.get('MachineDetectionDuration')} ms"
    else:
        what = f"{callback.get('kind')} request"
    return f"{what}  ({callback.get('method')} {path} -> {answered})"
