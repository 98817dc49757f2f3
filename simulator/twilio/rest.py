"""A local stand-in for Twilio's REST API (2010-04-01), the Calls resource: what the bridge uses
to hang a call up, redirect it (a transfer) or dial out, answered as Twilio answers.

`make run` starts one in development when TWILIO_ACCOUNT_SID is unset and points the server's
TWILIO_API_BASE_URL at it; the end-to-end tests run one beside the realtime stand-in. The
`twilio` package's client talks to it unchanged (`client.api.base_url = standin.url`).

Twilio's API, as its documentation and the `twilio` package (CallList.create, CallContext.update,
CallInstance) have it:

* `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` creates a call (201): `To`, `From` and one
  of `Url` / `Twiml` / `ApplicationSid` required; with both `Url` and `Twiml`, `Twiml` is
  ignored (documented). `StatusCallbackEvent` may repeat (initiated, ringing, answered,
  completed); methods are GET or POST; `MachineDetection` is Enable or DetectMessageEnd,
  `AsyncAmd` true or false; inline TwiML is at most 4,000 characters. The call is `queued`,
  direction `outbound-api`. Without `dial_out` nothing is dialled (`set_status` moves it on,
  for tests). With `dial_out=DialOut(server_url=..., public_base_url=...)` (CLI
  `--server-url`, `--public-base-url`) it is dialled as Twilio dials it, in a background task
  per call (simulator.twilio.callee): signed status callbacks for the `StatusCallbackEvent`s,
  ringing, the callee plan's answer, the TwiML's media stream with this CallSid, answering
  machine detection and its async callback; a hang-up or redirect of the live call ends its
  stream as Twilio ends it.
* `POST .../Calls/{CallSid}.json` updates a call (200): `Status=completed` hangs it up whatever
  its state (a call never answered ends `canceled`), `Status=canceled` ends only a queued or
  ringing call (documented: an in-progress call is not affected); `Twiml` or `Url` (+ `Method`)
  redirect it: the call leaves its current TwiML (a media stream ends) and runs the new one.
  A call that has ended cannot be updated: 400, code 21220, "Call is not in-progress. Cannot
  redirect."
* `GET .../Calls/{CallSid}.json` fetches one; `GET .../Calls.json` lists them (one page);
  `DELETE .../Calls/{CallSid}.json` deletes the record (204).
* Form-encoded bodies; HTTP Basic auth `AccountSid:AuthToken`, else 401 with Twilio's error
  body (code 20003); the path's account must be the authenticated one (401 too). An unknown
  call is 404 (code 20404). Errors are Twilio's JSON: `{"code", "message", "more_info",
  "status"}`. Parameters Twilio does not know are ignored, as Twilio ignores them, and listed in
  `problems` (a test can insist there are none).

For tests, beside Twilio's API:

* every API request is recorded (`requests`: method, path, form, auth, status answered);
* faults on demand: `fail_next(429, retry_after_s=1)`, `fail_next(503, count=2)`,
  `fail_next(400, code=21220, message=...)`: the next N API requests get that answer, whatever
  they are;
* the calls Twilio would know of without the REST API (the inbound call a simulated caller is
  on): `register_call(call_sid, from_, to, account_sid)` in this process, or for another
  process `POST /_simulator/calls` (form `CallSid`, `From`, `To`, `AccountSid`, `Status`);
  `POST /_simulator/calls/{CallSid}` sets its `Status` (the caller hung up);
  `GET /_simulator/calls/{CallSid}` is the stand-in's own view of a call (status, every
  redirect with its TwiML or URL), what the simulated caller polls to act as Twilio does;
  `GET /_simulator/requests` lists the recorded API requests (`?CallSid=` filters);
  `POST /_simulator/faults` (`Status`, `Count`, `RetryAfter`, `Code`, `Message`) arms a fault.
* outbound calls (with dial_out): who answers a number, `plan_callee(to, CalleePlan(...))` in
  this process (a human by default), or `POST /_simulator/callees` (form `To`, `AnsweredBy`
  human|machine|busy|no-answer|failed, optional `RingSeconds`, `MaxRecordingSeconds`;
  `GET` lists the plans and `dial_out`, the server dialled or null); the outcome of a leg is
  `legs[CallSid]` (`await wait_leg(CallSid)` once it is over: callbacks sent and what they were
  answered, the AMD answer, the message left on a machine, `ended_by`), and
  `GET /_simulator/calls/{CallSid}` shows it under `outbound`.
  Nothing under /_simulator/ is recorded or faulted, and none of it is Twilio's.

Run standalone: `python -m simulator.twilio.rest --port 8766 [--server-url http://127.0.0.1:8000
--public-base-url https://bridge.example.test]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import re
import secrets
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from bridge_project.config import STANDIN_ACCOUNT_SID, STANDIN_AUTH_TOKEN
from simulator.observed import Observed
from simulator.twilio.callee import Callee, CalleePlan, DialOut, OutboundLeg

DEFAULT_PORT = 8766
API_VERSION = "2010-04-01"
ACCOUNTS_PREFIX = f"/{API_VERSION}/Accounts/"
SIMULATOR_PREFIX = "/_simulator/"
MAX_TWIML_CHARS = 4000
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
# A keep-alive connection with no new request for this long is closed (requests' pool reopens).
IDLE_TIMEOUT_S = 30.0
LIST_PAGE_SIZE = 50

FINAL_STATUSES = frozenset({"completed", "canceled", "failed", "busy", "no-answer"})
CALL_STATUSES = frozenset({"queued", "ringing", "in-progress", *FINAL_STATUSES})
METHODS = ("GET", "POST")
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION = ("Enable", "DetectMessageEnd")
BOOLEANS = ("true", "false")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Besides E.164 numbers, Twilio dials SIP addresses, Client identities and SIMs.
_OTHER_ENDPOINT = re.compile(r"^(sip:|client:|sim:)\S+$")
_ACCOUNT_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/(?P<rest>.*)$")
_CALLS = re.compile(r"^Calls\.json$")
_CALL = re.compile(r"^Calls/(?P<sid>[^/]+)\.json$")

# The create parameters of the `twilio` package's CallList.create (and so Twilio's), and the
# update parameters of CallContext.update: anything else is ignored and noted in `problems`.
CREATE_PARAMS = frozenset(
    {
        "To", "From", "Method", "FallbackUrl", "FallbackMethod", "StatusCallback",
        "StatusCallbackEvent", "StatusCallbackMethod", "SendDigits", "Timeout", "Record",
        "RecordingChannels", "RecordingStatusCallback", "RecordingStatusCallbackMethod",
        "RecordingConfigurationId", "SipAuthUsername", "SipAuthPassword", "MachineDetection",
        "MachineDetectionTimeout", "RecordingStatusCallbackEvent", "Trim", "CallerId",
        "MachineDetectionSpeechThreshold", "MachineDetectionSpeechEndThreshold",
        "MachineDetectionSilenceTimeout", "AsyncAmd", "AsyncAmdStatusCallback",
        "AsyncAmdStatusCallbackMethod", "Passports", "Byoc", "CallReason", "CallToken",
        "RecordingTrack", "TimeLimit", "ClientNotificationUrl", "Url", "Twiml", "ApplicationSid",
    }
)  # fmt: skip
UPDATE_PARAMS = frozenset(
    {
        "Url", "Method", "Status", "FallbackUrl", "FallbackMethod", "StatusCallback",
        "StatusCallbackMethod", "Twiml", "TimeLimit",
    }
)  # fmt: skip
_CREATE_METHODS = (
    "Method",
    "FallbackMethod",
    "StatusCallbackMethod",
    "RecordingStatusCallbackMethod",
    "AsyncAmdStatusCallbackMethod",
)
_CREATE_INTEGERS = (
    "Timeout",
    "TimeLimit",
    "MachineDetectionTimeout",
    "MachineDetectionSpeechThreshold",
    "MachineDetectionSpeechEndThreshold",
    "MachineDetectionSilenceTimeout",
)
# A call's subresources, as its `subresource_uris` names them.
SUBRESOURCES = {
    "user_defined_message_subscriptions": "UserDefinedMessageSubscriptions.json",
    "user_defined_messages": "UserDefinedMessages.json",
    "notifications": "Notifications.json",
    "recordings": "Recordings.json",
    "streams": "Streams.json",
    "payments": "Payments.json",
    "siprec": "Siprec.json",
    "events": "Events.json",
    "transcriptions": "Transcriptions.json",
}
# Twilio's generic error code and title for each HTTP status the stand-in may answer.
_GENERIC: dict[int, tuple[int, str]] = {
    400: (20001, "Invalid parameter"),
    401: (20003, "Authenticate"),
    403: (20403, "Forbidden"),
    404: (20404, "Not Found"),
    405: (20004, "Method not allowed"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


class TwilioError(Exception):
    """An answer in Twilio's error shape: HTTP status, Twilio error code, message."""

    def __init__(self, status: int, code: int, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        return body


def _bad(code: int, message: str) -> TwilioError:
    return TwilioError(400, code, message)


def twilio_date(moment: datetime | None) -> str | None:
    """RFC 2822 in UTC, as Twilio writes dates ("Tue, 31 Aug 2010 20:36:28 +0000")."""
    return format_datetime(moment) if moment is not None else None


def formatted_number(number: str) -> str:
    """Twilio's display form: (415) 555-0100 for a North American number, else as given."""
    digits = number[2:]
    if number.startswith("+1") and len(digits) == 10 and digits.isdigit():
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    return number


def _now() -> datetime:
    return datetime.now(UTC)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


# --- what the stand-in keeps ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request to Twilio's API as the stand-in received it, and the status it answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    auth: tuple[str, str] | None
    headers: dict[str, str]
    status: int
    at: float

    def value(self, name: str) -> str | None:
        """The first value of form parameter `name`, or None."""
        values = self.form.get(name)
        return values[0] if values else None

    @property
    def call_sid(self) -> str | None:
        match = _ACCOUNT_PATH.match(self.path)
        call = _CALL.match(match.group("rest")) if match else None
        return call.group("sid") if call else None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "form": self.form,
            "account_sid": self.auth[0] if self.auth else None,
            "status": self.status,
            "headers": self.headers,
        }


@dataclass(frozen=True)
class Redirect:
    """An update that gave a call new instructions: inline TwiML, or a URL to fetch them from."""

    twiml: str | None
    url: str | None
    method: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"twiml": self.twiml, "url": self.url, "method": self.method}


@dataclass
class Fault:
    """The answer the next `remaining` API requests get instead of Twilio's."""

    status: int
    remaining: int = 1
    retry_after_s: float | None = None
    code: int | None = None
    message: str | None = None

    def error(self) -> TwilioError:
        generic_code, title = _GENERIC.get(self.status, (20001, HTTPStatus(self.status).phrase))
        return TwilioError(self.status, self.code or generic_code, self.message or title)


@dataclass
class StandInCall:
    """A call as Twilio keeps it; `resource()` is its JSON, field for field the CallInstance's."""

    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str
    status: str
    date_created: datetime
    date_updated: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    parent_call_sid: str | None = None
    phone_number_sid: str | None = None
    caller_name: str | None = None
    answered_by: str | None = None
    stir_verstat: str | None = None
    # What the call was told to do: the create's parameters, then each redirect.
    params: dict[str, list[str]] = field(default_factory=dict)
    redirects: list[Redirect] = field(default_factory=list)
    ended_by_rest: bool = False

    @property
    def uri(self) -> str:
        return f"{ACCOUNTS_PREFIX}{self.account_sid}/Calls/{self.sid}.json"

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def duration(self) -> str | None:
        if self.start_time is None or self.end_time is None:
            return None
        return str(int((self.end_time - self.start_time).total_seconds()))

    def set_status(self, status: str) -> None:
        if status not in CALL_STATUSES:
            raise ValueError(f"not a call status: {status!r}")
        now = _now()
        if status == "in-progress" and self.start_time is None:
            self.start_time = now
        if status in FINAL_STATUSES and self.end_time is None:
            self.end_time = now
        self.status = status
        self.date_updated = now

    def resource(self) -> dict[str, Any]:
        base = self.uri.removesuffix(".json")
        return {
            "sid": self.sid,
            "date_created": twilio_date(self.date_created),
            "date_updated": twilio_date(self.date_updated),
            "parent_call_sid": self.parent_call_sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": formatted_number(self.to),
            "from": self.from_,
            "from_formatted": formatted_number(self.from_),
            "phone_number_sid": self.phone_number_sid,
            "status": self.status,
            "start_time": twilio_date(self.start_time),
            "end_time": twilio_date(self.end_time),
            "duration": self.duration(),
            "price": None,
            "price_unit": "USD",
            "direction": self.direction,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": self.caller_name,
            "queue_time": "0",
            "stir_verstat": self.stir_verstat,
            "trunk_sid": None,
            "uri": self.uri,
            "subresource_uris": {name: f"{base}/{page}" for name, page in SUBRESOURCES.items()},
        }

    def view(self) -> dict[str, Any]:
        """The stand-in's own view (not Twilio's): what the simulated caller acts on."""
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "status": self.status,
            "direction": self.direction,
            "ended_by_rest": self.ended_by_rest,
            "redirects": [redirect.to_json() for redirect in self.redirects],
        }


# --- parameter checks, in Twilio's words ---------------------------------------------------------


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_endpoint(value: str) -> bool:
    return bool(_E164.match(value) or _OTHER_ENDPOINT.match(value))


def _check_methods(form: Mapping[str, list[str]], names: Sequence[str]) -> None:
    for name in names:
        value = _first(form, name)
        if value is not None and value.upper() not in METHODS:
            raise _bad(20001, f"{name} must be one of GET or POST, not '{value}'")


def _check_instructions(form: Mapping[str, list[str]]) -> None:
    url, twiml = _first(form, "Url"), _first(form, "Twiml")
    if url is not None and not _is_url(url):
        raise _bad(21205, f"Url is not a valid URL: {url}")
    if twiml is not None and len(twiml) > MAX_TWIML_CHARS:
        raise _bad(32018, "Twiml size exceeded maximum allowed value of 4000 characters")


def check_create(form: Mapping[str, list[str]], owned_numbers: frozenset[str] | None) -> None:
    """Raise the TwilioError Twilio answers a bad create with; return if it is acceptable."""
    to, from_ = _first(form, "To"), _first(form, "From")
    if not to:
        raise _bad(21201, "No 'To' number is specified")
    if not from_:
        raise _bad(21213, "No 'From' number is specified")
    if not any(_first(form, name) for name in ("Url", "Twiml", "ApplicationSid")):
        raise _bad(21205, "Either a 'Url', 'Twiml' or 'ApplicationSid' parameter is required")
    _check_instructions(form)
    if not _is_endpoint(to):
        raise _bad(21211, f"The phone number you are attempting to call, {to}, is not valid.")
    if not _is_endpoint(from_):
        raise _bad(21212, f"The caller phone number provided, {from_}, is not valid.")
    if owned_numbers is not None and from_ not in owned_numbers:
        raise _bad(
            21210,
            f"The source phone number provided, {from_}, is not yet verified for your account. "
            "You may only make calls from phone numbers that you've verified or purchased from "
            "Twilio.",
        )
    _check_methods(form, _CREATE_METHODS)
    for name in ("StatusCallback", "FallbackUrl", "AsyncAmdStatusCallback"):
        value = _first(form, name)
        if value is not None and not _is_url(value):
            raise _bad(21609, f"{name} is not a valid URL: {value}")
    events = [event for value in form.get("StatusCallbackEvent", []) for event in value.split()]
    if any(event not in STATUS_CALLBACK_EVENTS for event in events):
        raise _bad(21626, "One or more of the StatusCallbackEvents provided were invalid.")
    _check_choice(form, "MachineDetection", MACHINE_DETECTION)
    _check_choice(form, "AsyncAmd", BOOLEANS)
    _check_choice(form, "Record", BOOLEANS)
    for name in _CREATE_INTEGERS:
        value = _first(form, name)
        if value is not None and not value.strip().lstrip("-").isdigit():
            raise _bad(20001, f"{name} must be an integer, not '{value}'")


def _check_choice(form: Mapping[str, list[str]], name: str, allowed: Sequence[str]) -> None:
    value = _first(form, name)
    if value is not None and value not in allowed:
        raise _bad(20001, f"{name} must be one of {', '.join(allowed)}, not '{value}'")


def check_update(form: Mapping[str, list[str]], call: StandInCall) -> None:
    status = _first(form, "Status")
    if status is not None and status not in ("canceled", "completed"):
        raise _bad(20001, f"Status must be one of canceled, completed, not '{status}'")
    _check_instructions(form)
    _check_methods(form, ("Method", "FallbackMethod", "StatusCallbackMethod"))
    if call.final:
        raise _bad(21220, "Call is not in-progress. Cannot redirect.")


def twiml_problem(twiml: str) -> str | None:
    """Why Twilio could not run this TwiML (it fails the call with 12100 then), or None."""
    try:
        root = ET.fromstring(twiml)  # noqa: S314 - TwiML from the product under test
    except ET.ParseError as exc:
        return f"TwiML is not well-formed XML ({exc})"
    if root.tag != "Response":
        return f"TwiML's root element is <{root.tag}>, not <Response>"
    return None


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class HttpRequest:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def form(self) -> dict[str, list[str]]:
        content_type = self.headers.get("content-type", "")
        if not self.body or "application/x-www-form-urlencoded" not in content_type:
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, *, keep_alive: bool) -> bytes:
        phrase = HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {phrase}"]
        headers = {
            "Content-Length": str(len(self.body)),
            "Connection": "keep-alive" if keep_alive else "close",
            **self.headers,
        }
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class BadHttp(Exception):
    """A request the server cannot parse: answered 400 and the connection closed."""


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """One HTTP/1.1 request (Content-Length bodies only), or None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadHttp("incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise BadHttp("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadHttp(f"bad request line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadHttp(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadHttp("chunked request bodies are not supported (send Content-Length)")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise BadHttp("bad Content-Length") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise BadHttp("request body too large")
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(method.upper(), target, version, headers, body)


def basic_auth(headers: Mapping[str, str]) -> tuple[str, str] | None:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(
        status,
        orjson.dumps(payload),
        {
            "Content-Type": "application/json; charset=utf-8",
            # Twilio tags every answer with a request id; tests may correlate with it.
            "Twilio-Request-Id": _sid("RQ"),
            **(headers or {}),
        },
    )


def error_response(error: TwilioError, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return json_response(error.status, error.body(), headers)


# --- the server ---------------------------------------------------------------------------------


class TwilioRestStandIn(Observed):
    """`async with TwilioRestStandIn() as rest:`, then `rest.url` is TWILIO_API_BASE_URL.

    `accounts` maps account SIDs to their auth tokens (a tuple for a primary and a secondary
    token, as Twilio allows); by default only the stand-in's account (bridge_project.config's
    STANDIN_ACCOUNT_SID / STANDIN_AUTH_TOKEN), the credentials the product uses when it has
    no account of its own. `owned_numbers`, if given, are the only `From` numbers a create
    accepts (Twilio's "not yet verified" otherwise).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Mapping[str, str | Sequence[str]] | None = None,
        owned_numbers: Sequence[str] | None = None,
        dial_out: DialOut | None = None,
    ) -> None:
        self.host = host
        # Where the server is: with it, a created call is dialled (simulator.twilio.callee).
        self.dial_out = dial_out
        self.callee_plans: dict[str, CalleePlan] = {}
        self.legs: dict[str, OutboundLeg] = {}
        self._leg_tasks: set[asyncio.Task[OutboundLeg]] = set()
        self.requested_port = port
        chosen = accounts if accounts is not None else {STANDIN_ACCOUNT_SID: STANDIN_AUTH_TOKEN}
        self.accounts: dict[str, tuple[str, ...]] = {
            sid: (tokens,) if isinstance(tokens, str) else tuple(tokens)
            for sid, tokens in chosen.items()
        }
        self.owned_numbers = frozenset(owned_numbers) if owned_numbers is not None else None
        self.calls: dict[str, StandInCall] = {}
        self.requests: list[RecordedRequest] = []
        self.problems: list[str] = []
        self.faults: list[Fault] = []
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        super().__init__()

    # --- observation ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (still known once stopped, for a test's record)."""
        if self._port is None:
            raise RuntimeError("the REST stand-in is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL: what TWILIO_API_BASE_URL (client.api.base_url) is set to."""
        return f"http://{self.host}:{self.port}"

    @property
    def default_account_sid(self) -> str:
        return next(iter(self.accounts))

    def call(self, call_sid: str) -> StandInCall:
        return self.calls[call_sid]

    def api_requests(
        self, method: str | None = None, *, call_sid: str | None = None
    ) -> list[RecordedRequest]:
        return [
            request
            for request in self.requests
            if (method is None or request.method == method)
            and (call_sid is None or request.call_sid == call_sid)
        ]

    def updates(self, call_sid: str | None = None) -> list[RecordedRequest]:
        """Every update request (POST to a call), answered or refused."""
        return [r for r in self.api_requests("POST", call_sid=call_sid) if r.call_sid]

    def creates(self) -> list[RecordedRequest]:
        return [r for r in self.api_requests("POST") if r.path.endswith("/Calls.json")]

    # --- outbound calls (with dial_out) ----------------------------------------------------------

    def plan_callee(self, to_number: str, plan: CalleePlan) -> None:
        """How the party at `to_number` answers the calls dialled to it from now on (a human,
        when no plan names the number)."""
        self.callee_plans[to_number] = plan

    def leg(self, call_sid: str) -> OutboundLeg:
        """The outbound leg of a created call, as the callee side lived it (with dial_out)."""
        return self.legs[call_sid]

    async def wait_leg(self, call_sid: str, deadline_s: float = 30.0) -> OutboundLeg:
        """The leg once it is over: the final callback sent, the stream closed."""
        await self.wait_until(
            lambda: call_sid in self.legs and self.legs[call_sid].done.is_set(), deadline_s
        )
        return self.legs[call_sid]

    def _dial(self, call: StandInCall) -> None:
        assert self.dial_out is not None
        plan = self.callee_plans.get(call.to, CalleePlan())
        callee = Callee(self, call, plan, self.dial_out)
        self.legs[call.sid] = callee.leg
        task = asyncio.get_running_loop().create_task(callee.run())
        self._leg_tasks.add(task)
        task.add_done_callback(self._leg_tasks.discard)

    # --- the calls Twilio knows of without the REST API -----------------------------------------

    def register_call(
        self,
        call_sid: str,
        from_: str,
        to: str,
        account_sid: str | None = None,
        *,
        status: str = "in-progress",
        direction: str = "inbound",
    ) -> StandInCall:
        """A call Twilio has (the inbound call a simulated caller is on), so the product can
        update it. Registering a known SID again returns the call as it is."""
        if call_sid in self.calls:
            return self.calls[call_sid]
        now = _now()
        call = StandInCall(
            sid=call_sid,
            account_sid=account_sid or self.default_account_sid,
            to=to,
            from_=from_,
            direction=direction,
            status="queued",
            date_created=now,
            date_updated=now,
            phone_number_sid=_sid("PN") if direction == "inbound" else None,
        )
        call.set_status(status)
        self.calls[call_sid] = call
        self.notify()
        return call

    def set_status(self, call_sid: str, status: str) -> StandInCall:
        """Move a call on as the network would (answered, the caller hung up...)."""
        call = self.calls[call_sid]
        call.set_status(status)
        self.notify()
        return call

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after_s: float | None = None,
        code: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """The next `count` API requests are answered `status` (with Retry-After, when given)
        and Twilio's error body (`code` and `message`, or Twilio's generic ones)."""
        if not 400 <= status <= 599:
            raise ValueError(f"a fault is a 4xx or 5xx status, not {status}")
        HTTPStatus(status)  # ValueError for a status HTTP does not define
        fault = Fault(status, count, retry_after_s, code, message)
        self.faults.append(fault)
        return fault

    # --- server ---------------------------------------------------------------------------------

    async def start(self) -> TwilioRestStandIn:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.requested_port, limit=MAX_HEAD_BYTES
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        # The legs first: each ends its media stream as a call going down does.
        for task in list(self._leg_tasks):
            task.cancel()
        if self._leg_tasks:
            await asyncio.wait(list(self._leg_tasks), timeout=10.0)
        server.close()
        # Abort the open connections (keep-alive ones idle in a read) so their handlers end on
        # a closed stream; cancelling them instead makes asyncio's stream callback log noise.
        for writer in list(self._connections.values()):
            writer.transport.abort()
        if self._connections:
            _, pending = await asyncio.wait(self._connections.keys(), timeout=5.0)
            for task in pending:
                task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5.0)

    async def __aenter__(self) -> TwilioRestStandIn:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            await self._serve_requests(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(IDLE_TIMEOUT_S):
                    request = await read_request(reader)
            except BadHttp as exc:
                error = TwilioError(400, 20001, f"Bad request: {exc}")
                writer.write(error_response(error).encode(keep_alive=False))
                await writer.drain()
                return
            if request is None:
                return
            response = self.handle(request)
            writer.write(response.encode(keep_alive=request.keep_alive))
            await writer.drain()
            if not request.keep_alive:
                return

    # --- requests -------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        """The answer to one request (synchronous: no request waits on another)."""
        if request.path.startswith(SIMULATOR_PREFIX):
            response = self._simulator(request)
        else:
            response = self._api(request)
        self.notify()
        return response

    def _api(self, request: HttpRequest) -> HttpResponse:
        form = request.form()
        auth = basic_auth(request.headers)
        response = self._api_answer(request, form, auth)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                form=form,
                auth=auth,
                headers=dict(request.headers),
                status=response.status,
                at=time.monotonic(),
            )
        )
        return response

    def _api_answer(
        self, request: HttpRequest, form: dict[str, list[str]], auth: tuple[str, str] | None
    ) -> HttpResponse:
        fault = self._take_fault()
        if fault is not None:
            headers = {}
            if fault.retry_after_s is not None:
                headers["Retry-After"] = f"{fault.retry_after_s:g}"
            return error_response(fault.error(), headers)
        match = _ACCOUNT_PATH.match(request.path)
        if match is None:
            return error_response(self._not_found(request.path))
        try:
            self._authenticate(auth, match.group("account"))
            return self._route(request, match.group("account"), match.group("rest"), form)
        except TwilioError as error:
            headers = (
                {"WWW-Authenticate": 'Basic realm="Twilio API"'} if error.status == 401 else {}
            )
            return error_response(error, headers)

    def _take_fault(self) -> Fault | None:
        while self.faults and self.faults[0].remaining <= 0:
            self.faults.pop(0)
        if not self.faults:
            return None
        fault = self.faults[0]
        fault.remaining -= 1
        return fault

    def _authenticate(self, auth: tuple[str, str] | None, account_sid: str) -> None:
        # The token is compared in constant time, as any credential check should be.
        tokens = self.accounts.get(auth[0], ()) if auth else ()
        valid = auth is not None and any(secrets.compare_digest(auth[1], t) for t in tokens)
        if not valid or auth is None or auth[0] != account_sid:
            raise TwilioError(
                401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect."
            )

    def _not_found(self, path: str) -> TwilioError:
        return TwilioError(404, 20404, f"The requested resource {path} was not found")

    def _route(
        self, request: HttpRequest, account_sid: str, rest: str, form: dict[str, list[str]]
    ) -> HttpResponse:
        if _CALLS.match(rest):
            if request.method == "POST":
                return self._create(account_sid, form)
            if request.method == "GET":
                return self._list(account_sid, request.path)
            raise TwilioError(405, 20004, "Method not allowed")
        call_match = _CALL.match(rest)
        if call_match is None:
            raise self._not_found(request.path)
        call = self.calls.get(call_match.group("sid"))
        if call is None or call.account_sid != account_sid:
            raise self._not_found(request.path)
        if request.method == "GET":
            return json_response(200, call.resource())
        if request.method == "POST":
            return self._update(call, form)
        if request.method == "DELETE":
            del self.calls[call.sid]
            return HttpResponse(204)
        raise TwilioError(405, 20004, "Method not allowed")

    def _note_unknown(
        self, form: Mapping[str, list[str]], known: frozenset[str], what: str
    ) -> None:
        for name in sorted(set(form) - known):
            self.problems.append(f"{what}: '{name}' is not a parameter of Twilio's (ignored)")

    def _create(self, account_sid: str, form: dict[str, list[str]]) -> HttpResponse:
        self._note_unknown(form, CREATE_PARAMS, "create")
        check_create(form, self.owned_numbers)
        twiml = _first(form, "Twiml")
        if twiml is not None and _first(form, "Url") is None:
            self._note_twiml(twiml, "create")
        now = _now()
        call = StandInCall(
            sid=_sid("CA"),
            account_sid=account_sid,
            to=str(_first(form, "To")),
            from_=str(_first(form, "From")),
            direction="outbound-api",
            status="queued",
            date_created=now,
            date_updated=now,
            params=form,
        )
        self.calls[call.sid] = call
        if self.dial_out is not None:
            self._dial(call)
        return json_response(201, call.resource())

    def _list(self, account_sid: str, path: str) -> HttpResponse:
        calls = [c for c in self.calls.values() if c.account_sid == account_sid]
        calls.sort(key=lambda c: c.date_created, reverse=True)
        page = calls[:LIST_PAGE_SIZE]
        return json_response(
            200,
            {
                "calls": [call.resource() for call in page],
                "end": max(0, len(page) - 1),
                "first_page_uri": f"{path}?PageSize={LIST_PAGE_SIZE}&Page=0",
                "next_page_uri": None,
                "page": 0,
                "page_size": LIST_PAGE_SIZE,
                "previous_page_uri": None,
                "start": 0,
                "uri": f"{path}?PageSize={LIST_PAGE_SIZE}&Page=0",
            },
        )

    def _update(self, call: StandInCall, form: dict[str, list[str]]) -> HttpResponse:
        self._note_unknown(form, UPDATE_PARAMS, "update")
        check_update(form, call)
        status = _first(form, "Status")
        if status == "completed":
            # Hanging up a call nobody answered cancels it; an answered one completes.
            call.set_status("completed" if call.status == "in-progress" else "canceled")
            call.ended_by_rest = True
        elif status == "canceled" and call.status in ("queued", "ringing"):
            call.set_status("canceled")
            call.ended_by_rest = True
        else:
            self._redirect(call, form)
        return json_response(200, call.resource())

    def _redirect(self, call: StandInCall, form: Mapping[str, list[str]]) -> None:
        url, twiml = _first(form, "Url"), _first(form, "Twiml")
        if url is None and twiml is None:
            call.date_updated = _now()
            return
        if url is not None and twiml is not None:
            self.problems.append("update: both Url and Twiml given; Twilio uses Url")
            twiml = None
        if twiml is not None:
            self._note_twiml(twiml, "update")
        method = (_first(form, "Method") or "POST").upper()
        call.redirects.append(Redirect(twiml, url, method, time.monotonic()))
        call.date_updated = _now()

    def _note_twiml(self, twiml: str, what: str) -> None:
        problem = twiml_problem(twiml)
        if problem is not None:
            self.problems.append(f"{what}: {problem} (Twilio fails the call: error 12100)")

    # --- the simulator's own endpoints ----------------------------------------------------------

    def _simulator(self, request: HttpRequest) -> HttpResponse:
        rest = request.path.removeprefix(SIMULATOR_PREFIX).strip("/")
        form = request.form()
        try:
            if rest == "calls" and request.method == "POST":
                return self._sim_register(form)
            if rest == "callees" and request.method == "POST":
                return self._sim_callee(form)
            if rest == "callees" and request.method == "GET":
                plans = {to: plan.to_json() for to, plan in self.callee_plans.items()}
                return json_response(200, {"callees": plans, "dial_out": self._dial_out_url()})
            if rest.startswith("calls/"):
                return self._sim_call(request.method, rest.removeprefix("calls/"), form)
            if rest == "requests" and request.method == "GET":
                call_sid = _first(request.query, "CallSid")
                found = self.api_requests(call_sid=call_sid)
                return json_response(200, {"requests": [r.to_json() for r in found]})
            if rest == "faults" and request.method == "POST":
                return self._sim_fault(form)
        except (KeyError, ValueError) as exc:
            return json_response(400, {"error": f"{type(exc).__name__}: {exc}"})
        return json_response(
            404, {"error": f"no simulator endpoint {request.method} {request.path}"}
        )

    def _sim_register(self, form: Mapping[str, list[str]]) -> HttpResponse:
        call = self.register_call(
            form["CallSid"][0],
            form["From"][0],
            form["To"][0],
            _first(form, "AccountSid"),
            status=_first(form, "Status") or "in-progress",
            direction=_first(form, "Direction") or "inbound",
        )
        return json_response(201, call.resource())

    def _sim_call(self, method: str, sid: str, form: Mapping[str, list[str]]) -> HttpResponse:
        if sid not in self.calls:
            return json_response(404, {"error": f"no call {sid}"})
        if method == "POST":
            self.set_status(sid, form["Status"][0])
        view = self.calls[sid].view()
        if sid in self.legs:
            view["outbound"] = self.legs[sid].view()
        return json_response(200, view)

    def _sim_callee(self, form: Mapping[str, list[str]]) -> HttpResponse:
        ring = _first(form, "RingSeconds")
        recording = _first(form, "MaxRecordingSeconds")
        plan = CalleePlan(
            answered_by=_first(form, "AnsweredBy") or "human",
            ring_s=float(ring) if ring else 1.0,
            max_recording_s=float(recording) if recording else 60.0,
        )
        self.plan_callee(form["To"][0], plan)
        return json_response(
            201, {"to": form["To"][0], **plan.to_json(), "dial_out": self._dial_out_url()}
        )

    def _dial_out_url(self) -> str | None:
        """Where created calls are dialled (None: they are not), for a client to check."""
        return self.dial_out.server_url if self.dial_out is not None else None

    def _sim_fault(self, form: Mapping[str, list[str]]) -> HttpResponse:
        retry = _first(form, "RetryAfter")
        code = _first(form, "Code")
        fault = self.fail_next(
            int(form["Status"][0]),
            int(_first(form, "Count") or "1"),
            retry_after_s=float(retry) if retry else None,
            code=int(code) if code else None,
            message=_first(form, "Message"),
        )
        return json_response(201, {"status": fault.status, "count": fault.remaining})


async def serve_forever(host: str, port: int, dial_out: DialOut | None = None) -> None:
    """Run a stand-in until SIGINT or SIGTERM (what `make run` starts in development)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with TwilioRestStandIn(host=host, port=port, dial_out=dial_out) as standin:
        dials = (
            f"; created calls are dialled to {dial_out.server_url}"
            if dial_out is not None
            else "; created calls are not dialled (no --server-url)"
        )
        print(
            f"Twilio REST stand-in listening on {standin.url} (account {STANDIN_ACCOUNT_SID}, "
            f"not Twilio){dials}",
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local stand-in for Twilio's REST API (Calls).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--server-url",
        help="dial created calls to the server at this real address (http://127.0.0.1:PORT)",
    )
    parser.add_argument(
        "--public-base-url",
        help="the server's PUBLIC_BASE_URL, mapped onto --server-url (default: --server-url)",
    )
    args = parser.parse_args(argv)
    if args.public_base_url and not args.server_url:
        parser.error("--public-base-url needs --server-url")
    dial_out = (
        DialOut(server_url=args.server_url, public_base_url=args.public_base_url)
        if args.server_url
        else None
    )
    asyncio.run(serve_forever(args.host, args.port, dial_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
