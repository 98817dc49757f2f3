"""A GPT-Live call's cost: its billed seconds at the per-minute price, plus the tokens of the
Responses model its tools were delegated to (text only, cached input at its own rate)."""

from __future__ import annotations

import orjson
import pytest
from django.conf import settings

from realtime.bridge import USAGE_KEYS, live_cost_usd
from realtime.live import protocol
from simulator.openai.live import backend
from simulator.openai.tools import PlannedCall

PER_MINUTE = 0.05
# gpt-5-mini list prices, USD per 1M tokens (the settings' defaults).
BACKEND_PRICES = {"input_text": 0.25, "cached_input_text": 0.025, "output_text": 2.0}


def usage(input_text: int = 0, cached_text: int = 0, output_text: int = 0, **audio: int) -> dict:
    values = dict.fromkeys(USAGE_KEYS, 0)
    values.update(
        input_text_tokens=input_text, cached_text_tokens=cached_text, output_text_tokens=output_text
    )
    values.update(audio)
    return values


def test_the_bridge_prices_with_every_key_it_reads() -> None:
    assert set(settings.LIVE_BACKEND_PRICES_PER_M) == set(BACKEND_PRICES)
    assert {"input_text_tokens", "cached_text_tokens", "output_text_tokens"} <= set(USAGE_KEYS)


@pytest.mark.parametrize(("seconds", "cost"), [(0, 0.0), (60, 0.05), (90, 0.075), (3600, 3.0)])
def test_seconds_are_billed_at_the_per_minute_price(seconds: float, cost: float) -> None:
    assert live_cost_usd(seconds, usage(), PER_MINUTE, BACKEND_PRICES) == pytest.approx(
        cost, abs=1e-15
    )


def test_backend_tokens_are_added_with_cached_input_at_its_rate() -> None:
    tokens = usage(input_text=10_000, cached_text=4_000, output_text=500)
    # By hand: 90 s = $0.075; uncached 6,000 x $0.25 + cached 4,000 x $0.025 + output
    # 500 x $2.00, per million = $0.0026.
    assert live_cost_usd(90, tokens, PER_MINUTE, BACKEND_PRICES) == pytest.approx(0.0776, abs=1e-12)
    assert live_cost_usd(0, tokens, PER_MINUTE, BACKEND_PRICES) == pytest.approx(0.0026, abs=1e-12)


def test_cached_tokens_are_never_counted_twice_or_below_zero() -> None:
    # All input cached: only the cached rate.
    assert live_cost_usd(0, usage(1000, 1000), PER_MINUTE, BACKEND_PRICES) == pytest.approx(
        1000 * 0.025 / 1e6, abs=1e-15
    )
    # More cached than input cannot be: billed as if all the input were cached.
    assert live_cost_usd(0, usage(100, 250), PER_MINUTE, BACKEND_PRICES) == pytest.approx(
        100 * 0.025 / 1e6, abs=1e-15
    )


def test_each_token_kind_has_its_own_price() -> None:
    prices = {"input_text": 1.0, "cached_input_text": 10.0, "output_text": 100.0}
    assert live_cost_usd(0, usage(3, 1, 0), 0.0, prices) == pytest.approx(12 / 1e6, abs=1e-15)
    assert live_cost_usd(0, usage(0, 0, 2), 0.0, prices) == pytest.approx(200 / 1e6, abs=1e-15)


def test_audio_tokens_are_not_billed_the_seconds_are() -> None:
    tokens = usage(
        input_audio_tokens=1_000_000, output_audio_tokens=1_000_000, cached_audio_tokens=5
    )
    assert live_cost_usd(30, tokens, PER_MINUTE, BACKEND_PRICES) == pytest.approx(0.025, abs=1e-15)


def test_a_tool_round_trip_costs_the_tokens_its_responses_reported() -> None:
    """The backend's two responses (the call, then the answer) as the session parses them,
    summed as the bridge sums usage, then priced."""
    call = PlannedCall("lookup_order", '{"number":"427"}', "call_1", "fc_1")
    first = backend.BackendResponse("dlg_1", "resp_1", "gpt-5-mini")
    second = backend.BackendResponse("dlg_1", "resp_2", "gpt-5-mini")
    streams = [
        backend.function_call_events(first, [call], backend.Tokens(1200, 0, 20)),
        backend.message_events(second, "It shipped.", backend.Tokens(1300, 1200, 8)),
    ]
    totals = dict.fromkeys(USAGE_KEYS, 0)
    responses: dict[str, str] = {}
    for events in streams:
        for i, event in enumerate(events):
            message = {
                "type": "response.event",
                "event_id": f"e{i}",
                "event": event,
                "delegation_id": "dlg_1",
            }
            parsed = protocol.parse_server_message(orjson.dumps(message), responses)
            if type(parsed) is protocol.BackendResponseDone:
                for key in USAGE_KEYS:
                    totals[key] += getattr(parsed.usage, key)
    assert totals == usage(input_text=2500, cached_text=1200, output_text=28)
    # By hand: 125 s = $0.104166...; uncached 1,300 x $0.25 + cached 1,200 x $0.025 + output
    # 28 x $2.00 = 411 per million.
    assert live_cost_usd(125, totals, PER_MINUTE, BACKEND_PRICES) == pytest.approx(
        125 / 60 * 0.05 + 411 / 1e6, abs=1e-12
    )
