"""Lines from GPT-Live's timed transcript fragments.

GPT-Live sends both sides' transcripts as fragments with `start_ms`/`end_ms` on the session
timeline, "accumulated in delivery order", with no item ids and no done events. A line is
therefore a run of one side's fragments: it ends where the other side starts speaking or where
that side falls silent for longer than its gap. The agent's fragments arrive as its audio goes
out; the caller's arrive after a transcription delay, often after the agent has begun to
answer. So a line is only finished once nothing still on its way can change it:

* its own side has moved on: a later fragment of that side started a new line, or (the
  agent's, whose fragments come as its audio goes out) that side has been silent past the gap;
* and, for an agent line, the caller's transcript has reached the end of its sound (the
  caller's speech overlapping an agent line is what makes it interrupted);
* or, whatever arrived, `wait_ms` of timeline have passed since the line ended.

Lines are handed out in the order they start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from realtime.live.protocol import TranscriptDelta
from realtime.model import Role, TimedLine

# Silence within one side's speech longer than this starts a new line of that side: the
# caller pauses mid-thought; the agent's pause between sentences of one reply is shorter.
CALLER_LINE_GAP_MS = 1200
AGENT_LINE_GAP_MS = 800
# Sound on the agent's track this close to the previous sound is the same run of speech.
AUDIO_RUN_GAP_MS = 300
# One chunk of the track: the caller starting within it of the sound's end spoke over it.
OVERLAP_MARGIN_MS = 20
# A line no later fragment can still change after this long (the caller's transcription delay
# and the length of a turn spoken over the agent, with room to spare).
LINE_WAIT_MS = 6000


@dataclass
class _Line:
    role: Role
    start_ms: int
    end_ms: int
    fragments: list[TranscriptDelta] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(fragment.text for fragment in self.fragments).strip()


def _other(role: Role) -> Role:
    return "assistant" if role == "user" else "user"


class TranscriptTimeline:
    """Both sides' fragments of one session, assembled into finished lines."""

    def __init__(self, *, wait_ms: int = LINE_WAIT_MS) -> None:
        self.gap_ms: dict[Role, int] = {"user": CALLER_LINE_GAP_MS, "assistant": AGENT_LINE_GAP_MS}
        self.wait_ms = wait_ms
        self._pending: list[TranscriptDelta] = []
        self._through: dict[Role, int] = {"user": -1, "assistant": -1}
        # Runs of sound on the agent's track, [start, end] in track ms: a word cut off when
        # the caller spoke over the agent has sound but no fragment.
        self._sound: deque[list[float]] = deque(maxlen=256)

    def agent_sound(self, start_ms: float, end_ms: float) -> None:
        """The track carried sound (not silence) from start_ms to end_ms."""
        if self._sound and start_ms - self._sound[-1][1] <= AUDIO_RUN_GAP_MS:
            self._sound[-1][1] = end_ms
        else:
            self._sound.append([start_ms, end_ms])

    def add(self, fragment: TranscriptDelta) -> None:
        self._pending.append(fragment)
        self._through[fragment.role] = max(self._through[fragment.role], fragment.end_ms)

    def heard_through(self, role: Role) -> int:
        """Where that side's last fragment so far ends (-1: none yet)."""
        return self._through[role]

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def finished(self, now_ms: float) -> list[TimedLine]:
        """The lines nothing can change any more, as of `now_ms` on the session timeline."""
        return self._take(now_ms, force=False)

    def finish_all(self) -> list[TimedLine]:
        """Every line as it stands (the session is over)."""
        return self._take(0.0, force=True)

    def _take(self, now_ms: float, *, force: bool) -> list[TimedLine]:
        if not self._pending:
            return []
        lines = self._lines()
        done: list[TimedLine] = []
        for index, line in enumerate(lines):
            if not force and not self._is_finished(line, lines[index + 1 :], now_ms):
                break
            done.append(self._timed(line, lines[index + 1 :]))
        taken = {id(fragment) for line in lines[: len(done)] for fragment in line.fragments}
        self._pending = [fragment for fragment in self._pending if id(fragment) not in taken]
        return done

    def _lines(self) -> list[_Line]:
        """The pending fragments as lines, in the order they start (fragments of one side keep
        their delivery order, which is theirs on the timeline)."""
        lines: list[_Line] = []
        latest: dict[Role, _Line] = {}
        for fragment in sorted(self._pending, key=lambda each: each.start_ms):
            role = fragment.role
            line = latest.get(role)
            other = latest.get(_other(role))
            # The other side's line beginning in between ends this one: after its end for the
            # agent (whose words after a caller's first word are the reply being cut off), or
            # anywhere in it for the caller (what they say once the agent spoke is a new line).
            since = None if line is None else line.end_ms if role == "assistant" else line.start_ms
            joins = (
                line is not None
                and fragment.start_ms - line.end_ms <= self.gap_ms[role]
                and not (
                    other is not None
                    and since is not None
                    and since < other.start_ms <= fragment.start_ms
                )
            )
            if not joins or line is None:
                line = _Line(role, fragment.start_ms, fragment.end_ms)
                lines.append(line)
                latest[role] = line
            line.fragments.append(fragment)
            line.end_ms = max(line.end_ms, fragment.end_ms)
        return lines

    def _is_finished(self, line: _Line, later: list[_Line], now_ms: float) -> bool:
        if now_ms >= line.end_ms + self.wait_ms:
            return True
        # Its own side: a later line of that side began, or (the agent, whose fragments come
        # as its audio goes out) it has been silent past the gap. The caller's fragments come
        # late and a turn's in pieces: only a later caller line (or the wait) closes theirs.
        end_ms = self._sound_end(line)
        own_closed = any(each.role == line.role for each in later) or (
            line.role == "assistant" and now_ms >= end_ms + self.gap_ms["assistant"]
        )
        # The agent's line waits for the caller's transcript to reach its end: the caller's
        # words over it make it interrupted. Nothing of the agent's can change a caller line.
        return own_closed and (line.role == "user" or self._through["user"] >= end_ms)

    def _sound_end(self, line: _Line) -> float:
        """Where an agent line's sound ends: its last word's end, or later if the track kept
        sounding (the word the caller cut off); a caller line's last word."""
        if line.role != "assistant":
            return line.end_ms
        for start, end in reversed(self._sound):
            if start <= line.end_ms + OVERLAP_MARGIN_MS and end >= line.end_ms - OVERLAP_MARGIN_MS:
                return max(line.end_ms, end)
        return line.end_ms

    def _timed(self, line: _Line, later: list[_Line]) -> TimedLine:
        """The line as handed out; an agent line the caller spoke over is interrupted, and
        ends where its sound stopped (the caller heard that much of the cut word)."""
        if line.role == "assistant":
            end = self._sound_end(line)
            if any(
                each.role == "user" and line.start_ms < each.start_ms <= end + OVERLAP_MARGIN_MS
                for each in later
            ):
                return TimedLine(line.role, line.text, line.start_ms, end, interrupted=True)
        return TimedLine(line.role, line.text, line.start_ms, line.end_ms)
