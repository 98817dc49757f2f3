"""GPT-Live's timed transcript fragments of both sides, assembled into finished lines
(realtime.live.timeline): line gaps per side, when a line is finished, the wait, interruptions
and finish_all. Times are ms on the session timeline, as the fragments carry them."""

from __future__ import annotations

import pytest

from realtime.live.protocol import TranscriptDelta
from realtime.live.timeline import (
    AGENT_LINE_GAP_MS,
    CALLER_LINE_GAP_MS,
    LINE_WAIT_MS,
    OVERLAP_MARGIN_MS,
    TranscriptTimeline,
)
from realtime.model import TimedLine


def caller(text: str, start_ms: int, end_ms: int) -> TranscriptDelta:
    return TranscriptDelta("user", text, start_ms, end_ms)


def agent(text: str, start_ms: int, end_ms: int) -> TranscriptDelta:
    return TranscriptDelta("assistant", text, start_ms, end_ms)


def timeline(*fragments: TranscriptDelta, wait_ms: int = LINE_WAIT_MS) -> TranscriptTimeline:
    lines = TranscriptTimeline(wait_ms=wait_ms)
    for fragment in fragments:
        lines.add(fragment)
    return lines


def sound(lines: TranscriptTimeline, start_ms: int, end_ms: int, chunk_ms: int = 20) -> None:
    """The agent's track sounded from start_ms to end_ms, reported chunk by chunk as the session
    does for each output delta."""
    for at in range(start_ms, end_ms, chunk_ms):
        lines.agent_sound(at, min(at + chunk_ms, end_ms))


def test_the_rules_constants() -> None:
    # The values the scenarios below are built around.
    assert (CALLER_LINE_GAP_MS, AGENT_LINE_GAP_MS) == (1200, 800)
    assert (LINE_WAIT_MS, OVERLAP_MARGIN_MS) == (6000, 20)


def test_texts_are_joined_from_fragments_with_their_leading_spaces() -> None:
    lines = timeline(
        agent("Sure,", 0, 300), agent(" one", 300, 500), agent(" moment.", 500, 900),
        caller(" Thanks", 1500, 1800), caller(" a lot.", 1800, 2100),
    )  # fmt: skip
    assert [line.text for line in lines.finish_all()] == ["Sure, one moment.", "Thanks a lot."]


def test_the_callers_line_arriving_after_the_agent_began_answering_comes_out_first() -> None:
    lines = TranscriptTimeline()
    # The agent's answer goes out as its audio does...
    lines.add(agent("Sure,", 3000, 3400))
    lines.add(agent(" one moment.", 3400, 4000))
    assert lines.finished(4100) == []
    # ...the caller's turn it answers is transcribed later, then their next turn begins.
    for fragment in (
        caller("Where", 1000, 1400), caller(" is", 1400, 1700), caller(" my order?", 1700, 2500),
        caller(" Thanks.", 5000, 5500),
    ):  # fmt: skip
        lines.add(fragment)
    assert lines.finished(5600) == [
        TimedLine("user", "Where is my order?", 1000, 2500),
        TimedLine("assistant", "Sure, one moment.", 3000, 4000),
    ]
    # The caller's last line is still open: their turn may go on.
    assert lines.pending
    assert lines.finished(5600) == []
    assert lines.finish_all() == [TimedLine("user", "Thanks.", 5000, 5500)]


def test_a_callers_turn_delivered_in_pieces_is_one_line() -> None:
    lines = TranscriptTimeline()
    lines.add(caller("I", 0, 400))
    lines.add(caller(" want", 400, 800))
    assert lines.finished(900) == []
    # A pause of 1,000 ms (under the caller's gap) mid-thought, transcribed later.
    lines.add(caller(" a refund.", 1800, 2400))
    assert lines.finished(2500) == []
    lines.add(caller(" Please.", 3601, 4000))  # 1,201 ms later: a new line, closing the first
    lines.add(agent("Of course.", 4500, 5200))
    assert lines.finished(5300) == [TimedLine("user", "I want a refund.", 0, 2400)]
    assert lines.finish_all() == [
        TimedLine("user", "Please.", 3601, 4000),
        TimedLine("assistant", "Of course.", 4500, 5200),
    ]


@pytest.mark.parametrize(
    ("role", "gap_ms", "lines_expected"),
    [
        ("user", CALLER_LINE_GAP_MS, 1),
        ("user", CALLER_LINE_GAP_MS + 1, 2),
        ("assistant", AGENT_LINE_GAP_MS, 1),
        ("assistant", AGENT_LINE_GAP_MS + 1, 2),
    ],
)
def test_a_pause_longer_than_the_sides_gap_splits_its_lines(
    role: str, gap_ms: int, lines_expected: int
) -> None:
    lines = timeline(
        TranscriptDelta(role, "Hello.", 0, 500),
        TranscriptDelta(role, " How are you?", 500 + gap_ms, 1500 + gap_ms),
    )
    if lines_expected == 1:
        assert lines.finish_all() == [TimedLine(role, "Hello. How are you?", 0, 1500 + gap_ms)]
    else:
        assert lines.finish_all() == [
            TimedLine(role, "Hello.", 0, 500),
            TimedLine(role, "How are you?", 500 + gap_ms, 1500 + gap_ms),
        ]


def test_the_agents_pause_closes_its_line_once_the_caller_has_caught_up() -> None:
    lines = timeline(
        agent("Hello.", 0, 500),
        agent(" How can I help?", 1400, 2200),  # 900 ms later: a second line
        caller("Hi.", 2600, 3000),
    )
    # The first line is closed by the second; the second by the agent's silence past its gap.
    assert lines.finished(2900) == [TimedLine("assistant", "Hello.", 0, 500)]
    assert lines.finished(3000) == [TimedLine("assistant", "How can I help?", 1400, 2200)]


def test_a_side_starting_between_two_fragments_ends_the_line_within_the_gap() -> None:
    lines = timeline(
        caller("Hello?", 0, 500),
        agent("Hi!", 700, 1000),
        caller(" Is anyone there?", 1100, 1800),  # within the caller's gap, but after the agent
    )
    assert lines.finish_all() == [
        TimedLine("user", "Hello?", 0, 500),
        TimedLine("assistant", "Hi!", 700, 1000),
        TimedLine("user", "Is anyone there?", 1100, 1800),
    ]


def test_an_agent_line_waits_for_its_silence_past_the_gap() -> None:
    lines = timeline(agent("Hi, this is Ada.", 0, 1500), caller("Hello", 2000, 2500))
    # The caller's transcript is past the line's end, but the agent may still be talking.
    assert lines.finished(2299) == []
    assert lines.finished(2300) == [TimedLine("assistant", "Hi, this is Ada.", 0, 1500)]


def test_an_agent_line_waits_for_the_callers_transcript_to_reach_its_end() -> None:
    lines = timeline(agent("Hi, this is Ada.", 0, 1500))
    # Silent past the gap, but the caller's transcript (late) might still show they spoke over
    # it: held back until it reaches the line's end...
    assert lines.finished(2300) == []
    assert lines.finished(LINE_WAIT_MS + 1499) == []
    lines.add(caller("Hello", 1000, 1499))  # one ms short of the line's end
    assert lines.finished(2400) == []
    lines.add(caller(" there", 1499, 1500))
    assert lines.finished(2400) == [
        TimedLine("assistant", "Hi, this is Ada.", 0, 1500, interrupted=True)
    ]


def test_an_agent_line_is_handed_out_once_the_wait_has_passed() -> None:
    lines = timeline(agent("Hi, this is Ada.", 0, 1500))
    assert lines.finished(1500 + LINE_WAIT_MS - 1) == []
    assert lines.finished(1500 + LINE_WAIT_MS) == [
        TimedLine("assistant", "Hi, this is Ada.", 0, 1500)
    ]
    assert not lines.pending
    short = timeline(agent("Hi.", 0, 1500), wait_ms=1000)
    assert short.finished(2499) == []
    assert short.finished(2500) == [TimedLine("assistant", "Hi.", 0, 1500)]


def test_a_callers_line_is_handed_out_once_the_wait_has_passed() -> None:
    lines = timeline(caller("Hello?", 0, 800))
    assert lines.finished(800 + LINE_WAIT_MS - 1) == []
    assert lines.finished(800 + LINE_WAIT_MS) == [TimedLine("user", "Hello?", 0, 800)]


def interrupted_reply(caller_start_ms: int) -> TranscriptTimeline:
    """The agent's words end at 900 but its track sounds to 1400 (the word the caller cut off);
    the caller starts at `caller_start_ms`."""
    lines = timeline(agent("Let", 0, 300), agent(" me", 300, 600), agent(" check", 600, 900))
    sound(lines, 0, 1400)
    lines.add(caller("Wait,", caller_start_ms, caller_start_ms + 300))
    lines.add(caller(" no.", caller_start_ms + 300, caller_start_ms + 1000))
    return lines


@pytest.mark.parametrize("caller_start_ms", [500, 900, 1200, 1400 + OVERLAP_MARGIN_MS])
def test_the_caller_starting_within_the_agents_sound_interrupts_it(caller_start_ms: int) -> None:
    lines = interrupted_reply(caller_start_ms)
    # Finished once the agent's sound (not just its words) is past the gap.
    assert lines.finished(1400 + AGENT_LINE_GAP_MS - 1) == []
    assert lines.finished(1400 + AGENT_LINE_GAP_MS) == [
        TimedLine("assistant", "Let me check", 0, 1400, interrupted=True)
    ]
    assert lines.finish_all() == [
        TimedLine("user", "Wait, no.", caller_start_ms, caller_start_ms + 1000)
    ]


@pytest.mark.parametrize("caller_start_ms", [1400 + OVERLAP_MARGIN_MS + 1, 2000])
def test_the_caller_starting_after_the_sound_ended_is_no_interruption(caller_start_ms: int) -> None:
    lines = interrupted_reply(caller_start_ms)
    assert lines.finish_all() == [
        TimedLine("assistant", "Let me check", 0, 900),
        TimedLine("user", "Wait, no.", caller_start_ms, caller_start_ms + 1000),
    ]


def test_without_registered_sound_the_line_ends_at_its_last_word() -> None:
    hit = timeline(agent("Let me check", 0, 900), caller("Wait", 900 + OVERLAP_MARGIN_MS, 1300))
    assert hit.finish_all()[0] == TimedLine("assistant", "Let me check", 0, 900, interrupted=True)
    miss = timeline(agent("Let me check", 0, 900), caller("Wait", 901 + OVERLAP_MARGIN_MS, 1300))
    assert miss.finish_all()[0] == TimedLine("assistant", "Let me check", 0, 900)


def test_sound_runs_join_across_short_gaps_only() -> None:
    # 300 ms of silence on the track is the same run: the caller at 1500 spoke over it.
    joined = timeline(agent("Let me check", 0, 900))
    joined.agent_sound(0, 1000)
    joined.agent_sound(1300, 1600)
    joined.add(caller("Wait", 1500, 1900))
    assert joined.finish_all()[0] == TimedLine(
        "assistant", "Let me check", 0, 1600, interrupted=True
    )
    # 400 ms of silence: the later sound is another run, the line's sound ended at 1000.
    apart = timeline(agent("Let me check", 0, 900))
    apart.agent_sound(0, 1000)
    apart.agent_sound(1400, 1600)
    apart.add(caller("Wait", 1500, 1900))
    assert apart.finish_all()[0] == TimedLine("assistant", "Let me check", 0, 900)


def test_an_agent_line_waits_for_the_callers_transcript_to_reach_its_sounds_end() -> None:
    lines = timeline(agent("Let", 0, 300), agent(" me check", 300, 900))
    sound(lines, 0, 1400)
    lines.add(caller("Wait,", 1000, 1399))  # past the last word, short of the sound's end
    assert lines.finished(2200) == []
    lines.add(caller(" no.", 1399, 1700))
    assert lines.finished(2200) == [
        TimedLine("assistant", "Let me check", 0, 1400, interrupted=True)
    ]


def test_finish_all_hands_out_everything_pending_in_start_order() -> None:
    lines = timeline(
        agent("Hello, how can I help?", 0, 1500),
        agent(" I can check an order.", 3000, 4000),
        caller("Yes,", 4010, 4300),
        caller(" order 427.", 4300, 5000),
    )
    sound(lines, 3000, 4100)
    lines.add(caller("Hi!", 1600, 1900))  # transcribed late
    assert lines.finish_all() == [
        TimedLine("assistant", "Hello, how can I help?", 0, 1500),
        TimedLine("user", "Hi!", 1600, 1900),
        TimedLine("assistant", "I can check an order.", 3000, 4100, interrupted=True),
        TimedLine("user", "Yes, order 427.", 4010, 5000),
    ]
    assert not lines.pending
    assert lines.finish_all() == []
    assert lines.finished(60_000) == []


def test_fragments_after_a_line_was_handed_out_start_a_new_one() -> None:
    lines = timeline(caller("Hello", 0, 500), wait_ms=1000)
    assert lines.finished(1500) == [TimedLine("user", "Hello", 0, 500)]
    lines.add(caller(" again", 600, 900))
    assert lines.finish_all() == [TimedLine("user", "again", 600, 900)]


def test_the_caller_continuing_over_an_agent_that_began_during_their_last_word() -> None:
    lines = timeline(caller("I", 0, 400), caller(" need", 400, 1000), agent("Sure", 900, 1300))
    lines.agent_sound(900, 1500)
    lines.add(caller(" help", 1000, 1400))  # starts inside the agent's sound
    done = lines.finish_all()
    assert [line for line in done if line.role == "assistant"] == [
        TimedLine("assistant", "Sure", 900, 1500, interrupted=True)
    ]
