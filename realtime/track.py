"""A continuous agent track (GPT-Live) as the caller hears it.

GPT-Live streams one track per session, silence between replies included, paced about in
real time, and times the agent's words on the session timeline. The audio for a moment of
the timeline reaches the bridge about when the caller's audio of that moment did, and is sent
on at once; Twilio plays it at real time, queued behind what it has not played yet. So a word
is heard when its audio arrived plus how far the caller's playback queue ran behind then.
`TrackPlayback` keeps that lag as it changes (it grows when a delta arrives late and the
queue ran dry), so a moment of the timeline maps to the moment the caller heard it. It also
tells speech from the track's silence, cheaply, per delta: a reply's first sound starts a
turn, and a reply has been heard once the track has been quiet a while.
"""

from __future__ import annotations

import bisect

from audio.g711 import ulaw_is_audible

ULAW_BYTES_PER_MS = 8
# A pause in the agent's speech longer than this ends a reply (as the live timeline's gap
# between two agent lines).
REPLY_GAP_MS = 800.0
# Changes of the playback lag smaller than this are jitter, not worth an anchor.
LAG_STEP_MS = 0.5


class TrackPlayback:
    """One session's track: how far playback runs behind arrival, and where its speech is."""

    def __init__(self) -> None:
        self._arrived_ms: list[float] = []  # call time from which ...
        self._lag_ms: list[float] = []  # ... audio arriving plays this much later
        self.speech_until_ms: float | None = None  # call time the last speech heard ends

    def add(
        self, ulaw: bytes, arrived_ms: float, plays_at_ms: float, *, audible: bool | None = None
    ) -> bool:
        """A delta that arrived (and was sent to Twilio) at `arrived_ms` and starts playing at
        `plays_at_ms`; True if it begins a reply (speech after a pause of REPLY_GAP_MS).
        `audible`: whether it carries sound, if the session already knows (else tested here)."""
        lag = plays_at_ms - arrived_ms
        if not self._lag_ms or abs(self._lag_ms[-1] - lag) > LAG_STEP_MS:
            self._arrived_ms.append(arrived_ms)
            self._lag_ms.append(lag)
        if not (ulaw_is_audible(ulaw) if audible is None else audible):
            return False
        last = self.speech_until_ms
        self.speech_until_ms = plays_at_ms + len(ulaw) / ULAW_BYTES_PER_MS
        return last is None or plays_at_ms - last > REPLY_GAP_MS

    def heard_at(self, arrived_ms: float) -> float:
        """When the caller heard (hears) audio that arrived at `arrived_ms`."""
        index = bisect.bisect_right(self._arrived_ms, arrived_ms) - 1
        return arrived_ms + (self._lag_ms[index] if index >= 0 else 0.0)
