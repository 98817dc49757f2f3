"""A call's cost is the list price of the usage the service reported, kind by kind."""

from __future__ import annotations

import pytest

from realtime.bridge import USAGE_KEYS, estimated_cost_usd
from realtime.protocol import usage_from

# gpt-realtime list prices, USD per 1M tokens (the settings' defaults).
PRICES = {
    "input_audio": 32.0,
    "cached_input_audio": 0.40,
    "input_text": 4.0,
    "cached_input_text": 0.40,
    "output_audio": 64.0,
    "output_text": 16.0,
}


def response_usage(
    audio_in: int, text_in: int, cached_audio: int, cached_text: int, audio_out: int, text_out: int
) -> dict:
    """A response.done `usage` as the service reports it: the whole context is input, the part
    seen by the previous response is cached, split by kind."""
    return {
        "total_tokens": audio_in + text_in + audio_out + text_out,
        "input_tokens": audio_in + text_in,
        "output_tokens": audio_out + text_out,
        "input_token_details": {
            "audio_tokens": audio_in,
            "text_tokens": text_in,
            "cached_tokens": cached_audio + cached_text,
            "cached_tokens_details": {"audio_tokens": cached_audio, "text_tokens": cached_text},
        },
        "output_token_details": {"audio_tokens": audio_out, "text_tokens": text_out},
    }


def test_a_three_turn_call_costs_its_usage_at_list_price() -> None:
    responses = [
        response_usage(150, 60, 0, 0, 480, 30),
        response_usage(630, 90, 150, 64, 510, 34),
        response_usage(1100, 120, 704, 64, 300, 20),
    ]
    totals = dict.fromkeys(USAGE_KEYS, 0)
    for usage in responses:
        parsed = usage_from(usage)
        for key in USAGE_KEYS:
            totals[key] += getattr(parsed, key)
    assert totals == {
        "input_audio_tokens": 1880,
        "output_audio_tokens": 1290,
        "input_text_tokens": 270,
        "output_text_tokens": 84,
        "cached_audio_tokens": 854,
        "cached_text_tokens": 128,
    }
    # By hand: uncached audio 1,026 x $32 + cached audio 854 x $0.40 + uncached text 142 x $4
    # + cached text 128 x $0.40 + audio out 1,290 x $64 + text out 84 x $16, per million.
    assert estimated_cost_usd(totals, PRICES) == pytest.approx(0.1176968, abs=1e-12)


def test_cached_tokens_are_never_billed_twice_or_below_zero() -> None:
    usage = dict.fromkeys(USAGE_KEYS, 0)
    usage.update(input_text_tokens=100, cached_text_tokens=250, input_audio_tokens=10)
    # Cached beyond the input of its kind cannot be: billed as if all of that kind were cached.
    assert estimated_cost_usd(usage, PRICES) == pytest.approx((100 * 0.40 + 10 * 32) / 1e6)


def test_each_cached_kind_has_its_own_price() -> None:
    usage = dict.fromkeys(USAGE_KEYS, 0)
    usage.update(input_audio_tokens=1000, cached_audio_tokens=1000)
    prices = {**PRICES, "cached_input_audio": 2.0, "cached_input_text": 0.1}
    assert estimated_cost_usd(usage, prices) == pytest.approx(2000 / 1e6)
