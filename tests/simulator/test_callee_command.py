"""`manage.py simulate_call --outbound`: its own parts, without the product's outbound endpoint
(the product side tests the flow end to end): clear errors, the API user it acts as, the callee
plan at the stand-in, the API's refusal printed with its code. Loopback only, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
from collections.abc import Iterator

import orjson
import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from support import free_port

from simulator.management.commands import simulate_call
from simulator.twilio.callee import DialOut
from simulator.twilio.rest import TwilioRestStandIn


def test_no_server_is_a_clear_error():
    with pytest.raises(CommandError, match="make run"):
        call_command("simulate_call", "--outbound", "--url", f"http://127.0.0.1:{free_port()}")


@pytest.mark.django_db
def test_the_api_user_has_just_the_permissions_an_outbound_call_needs():
    key = simulate_call._api_token()
    token = Token.objects.select_related("user").get(key=key)
    assert token.user.username == "simulator" and not token.user.is_staff
    assert token.user.has_perm("calls.add_call") and token.user.has_perm("calls.view_call")
    assert not token.user.has_perm("calls.delete_call")
    assert simulate_call._api_token() == key  # the same user and token next time


@contextlib.contextmanager
def api_answering(status: int, body: dict[str, object]) -> Iterator[str]:
    """A loopback server that answers every request with `status` and the JSON `body`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = orjson.dumps(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_api_refusal_is_printed_with_its_code_and_message():
    refusal = {"error": {"code": "permission_denied", "message": "This needs calls.add_call."}}
    with (
        api_answering(403, refusal) as url,
        pytest.raises(CommandError, match=r"403 permission_denied.*This needs calls\.add_call"),
    ):
        simulate_call._place_call(url, "token", {"to": "+15550009999"})


def test_a_placed_call_is_returned():
    call = {"id": "7b4b8e9a-0000-4000-8000-000000000001", "call_sid": "CA1", "status": "queued"}
    with api_answering(201, call) as url:
        assert simulate_call._place_call(url, "token", {"to": "+15550009999"}) == call


async def test_the_callee_is_planned_at_a_stand_in_that_dials_out():
    options = {"to": "+15550009999", "answered_by": "machine", "ring_seconds": 0.5}
    command = simulate_call.Command()
    async with TwilioRestStandIn() as standin:
        with pytest.raises(CommandError, match="does not dial out"):
            await asyncio.to_thread(command._plan_callee, standin.url, options)
        standin.dial_out = DialOut("http://127.0.0.1:9")
        await asyncio.to_thread(command._plan_callee, standin.url, options)
        plan = standin.callee_plans["+15550009999"]
        assert (plan.answered_by, plan.ring_s) == ("machine", 0.5)
    with pytest.raises(CommandError, match="not reachable"):
        await asyncio.to_thread(command._plan_callee, standin.url, options)
