"""Twilio's REST API through the `twilio` client, against the Twilio REST stand-in on loopback:
the documented request, retries where Twilio says to retry, clear refusals otherwise."""

from __future__ import annotations

import asyncio

import pytest

from bridge_project.config import STANDIN_ACCOUNT_SID
from simulator.twilio.rest import TwilioRestStandIn
from telephony import rest

CALL_SID = "CA" + "7" * 32


@pytest.fixture
async def twilio(settings):
    async with TwilioRestStandIn() as standin:
        settings.TWILIO_ACCOUNT_SID = ""
        settings.TWILIO_AUTH_TOKEN = ""
        settings.TWILIO_API_BASE_URL = standin.url
        standin.register_call(CALL_SID, "+14155550123", "+14155550100", status="in-progress")
        yield standin


async def test_a_hang_up_is_the_documented_update(twilio) -> None:
    await asyncio.to_thread(rest.call_hang_up, call_sid=CALL_SID)
    [update] = twilio.updates(CALL_SID)
    assert update.path == f"/2010-04-01/Accounts/{STANDIN_ACCOUNT_SID}/Calls/{CALL_SID}.json"
    assert update.form == {"Status": ["completed"]}
    assert update.status == 200


async def test_a_redirect_sends_the_twiml(twilio) -> None:
    twiml = "<Response><Dial><Number>+15550003333</Number></Dial></Response>"
    await asyncio.to_thread(rest.call_redirect, call_sid=CALL_SID, twiml=twiml)
    [update] = twilio.updates(CALL_SID)
    assert update.value("Twiml") == twiml


async def test_429_and_5xx_are_retried_with_backoff(twilio, monkeypatch) -> None:
    monkeypatch.setattr(rest, "RETRY_BASE_S", 0.01)
    twilio.fail_next(429, retry_after_s=0)
    twilio.fail_next(503)
    await asyncio.to_thread(rest.call_hang_up, call_sid=CALL_SID)
    assert [update.status for update in twilio.updates(CALL_SID)] == [429, 503, 200]


async def test_a_refusal_says_twilios_code_and_is_not_retried(twilio) -> None:
    with pytest.raises(rest.RestUnavailable, match="404, code 20404"):
        await asyncio.to_thread(rest.call_hang_up, call_sid="CA" + "0" * 32)
    assert len(twilio.updates()) == 1


def test_without_an_account_there_is_nobody_to_ask(settings) -> None:
    settings.TWILIO_ACCOUNT_SID = ""
    settings.TWILIO_API_BASE_URL = "https://api.twilio.com"
    with pytest.raises(rest.RestUnavailable, match="TWILIO_ACCOUNT_SID"):
        rest.call_hang_up(call_sid=CALL_SID)
