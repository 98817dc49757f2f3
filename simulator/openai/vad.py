"""The stand-in's server VAD: energy on 10 ms frames, on the model's input-audio clock.

Like the service's `server_vad`: speech starts once the level stays above the threshold for a
short while (100 ms here), `audio_start_ms` reaches back by `prefix_padding_ms`, and speech stops
after `silence_duration_ms` below it, `audio_end_ms` being that moment: the silence that closed
the turn is included, as in the service's `speech_stopped.audio_end_ms` (a turn of speech ending
at 2.0 s with the default 500 ms of silence stops at 2500 ms).

`semantic_vad` ends a turn when the service's turn model judges the caller done (waiting at most
8, 4 or 2 s for eagerness low, medium/auto, high). The stand-in has no such model: it ends a
semantic_vad turn on silence as server_vad does (default threshold and padding), after a closing
silence the eagerness sets (`SEMANTIC_SILENCE_MS`): high 300 ms, medium and auto 500 ms, low
1000 ms. So eagerness changes when the reply comes, in the direction the service's would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

FRAME_MS = 10
# The silence that closes a semantic_vad turn here, by eagerness (see the module's docstring).
SEMANTIC_SILENCE_MS = {"high": 300, "medium": 500, "auto": 500, "low": 1000}


@dataclass(frozen=True)
class TurnSettings:
    """What the energy VAD needs of a session's turn detection (the service's defaults)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


def turn_settings(detection: Mapping[str, Any]) -> TurnSettings:
    """The VAD settings of a turn detection (server_vad or semantic_vad); absent or null
    fields are the service's defaults."""
    if detection.get("type") == "semantic_vad":
        eagerness = str(detection.get("eagerness") or "auto")
        return TurnSettings(silence_duration_ms=SEMANTIC_SILENCE_MS.get(eagerness, 500))
    defaults = TurnSettings()

    def number(key: str, default: float) -> float:
        value = detection.get(key)
        return default if value is None else float(value)

    return TurnSettings(
        threshold=number("threshold", defaults.threshold),
        prefix_padding_ms=int(number("prefix_padding_ms", defaults.prefix_padding_ms)),
        silence_duration_ms=int(number("silence_duration_ms", defaults.silence_duration_ms)),
    )


@dataclass(frozen=True)
class VadChange:
    """speech started (`started`) or stopped at `at_ms` on the input-audio clock."""

    started: bool
    at_ms: int


class EnergyVad:
    def __init__(self, *, start_ms: int = 100) -> None:
        self.start_ms = start_ms
        self.speaking = False
        self.samples = 0  # the input-audio clock, in samples of the current rate
        self._voiced_run_ms = 0
        self._quiet_run_ms = 0
        self._carry = np.zeros(0, dtype=np.int16)

    def feed(
        self,
        pcm: np.ndarray,
        rate: int,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
    ) -> list[VadChange]:
        """Advance the clock by `pcm` and return the speech starts/stops it contains."""
        frame = rate * FRAME_MS // 1000
        frame_end = self.samples - self._carry.size  # where the carried samples began
        self.samples += pcm.size
        changes: list[VadChange] = []
        for voiced in self._voiced_frames(pcm, frame, _threshold_sq(threshold)):
            frame_end += frame
            now_ms = frame_end * 1000 // rate
            change = self._step(voiced, now_ms, prefix_padding_ms, silence_duration_ms)
            if change is not None:
                changes.append(change)
        return changes

    def end_turn(self) -> None:
        """The turn was committed by the client: forget it was open (no stop will follow),
        so speech that goes on has to start a new turn. The clock runs on."""
        self.speaking = False
        self._voiced_run_ms = 0
        self._quiet_run_ms = 0

    def _voiced_frames(self, pcm: np.ndarray, frame: int, threshold_sq: float) -> list[bool]:
        if self._carry.size:
            pcm = np.concatenate((self._carry, pcm))
        whole = pcm.size - pcm.size % frame
        self._carry = pcm[whole:].copy()
        if not whole:
            return []
        frames = pcm[:whole].astype(np.float64).reshape(-1, frame)
        return (np.mean(frames * frames, axis=1) >= threshold_sq).tolist()

    def _step(
        self, voiced: bool, now_ms: int, padding_ms: int, silence_ms: int
    ) -> VadChange | None:
        if not self.speaking:
            self._voiced_run_ms = self._voiced_run_ms + FRAME_MS if voiced else 0
            if self._voiced_run_ms < self.start_ms:
                return None
            self.speaking, self._quiet_run_ms = True, 0
            onset_ms = now_ms - self._voiced_run_ms
            return VadChange(True, max(0, onset_ms - padding_ms))
        self._quiet_run_ms = 0 if voiced else self._quiet_run_ms + FRAME_MS
        if self._quiet_run_ms < silence_ms:
            return None
        self.speaking, self._voiced_run_ms = False, 0
        return VadChange(False, now_ms)


def _threshold_sq(threshold: float) -> float:
    # The session's 0..1 threshold maps to -60..-20 dBFS: the default 0.5 is -40 dBFS, above a
    # phone line's noise floor and far below speech. Compared as mean squares (no sqrt).
    dbfs = -60.0 + 40.0 * min(1.0, max(0.0, threshold))
    return (32768.0 * 10.0 ** (dbfs / 20.0)) ** 2
