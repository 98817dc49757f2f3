"""Incremental energy VAD: counts seconds of speech in a stream of int16 blocks.

Deliberately simple (talk-time analytics, not endpointing): the signal is cut into 20 ms frames
and a frame counts as speech when its RMS level is at least -40 dBFS. That is above the noise
floor of a PSTN line after mu-law and well below conversational speech (typically -30 to
-15 dBFS). Frames are aligned to the start of the stream, whatever the block sizes fed, so
measuring during recording and re-measuring a file afterwards give the same number.
"""

from __future__ import annotations

import numpy as np

VAD_FRAME_MS = 20
VAD_THRESHOLD_DBFS = -40.0


class SpeechMeter:
    """Accumulates speech seconds for one channel, fed block by block."""

    __slots__ = ("_carry", "_frame_len", "_sample_rate", "_speech_samples", "_threshold_sq")

    def __init__(
        self,
        sample_rate: int,
        *,
        frame_ms: int = VAD_FRAME_MS,
        threshold_dbfs: float = VAD_THRESHOLD_DBFS,
    ) -> None:
        self._sample_rate = sample_rate
        self._frame_len = sample_rate * frame_ms // 1000
        # Compare mean squares against the squared threshold: no sqrt per frame.
        self._threshold_sq = (32768.0 * 10.0 ** (threshold_dbfs / 20.0)) ** 2
        self._carry = np.empty(0, dtype=np.int16)
        self._speech_samples = 0

    @property
    def speech_seconds(self) -> float:
        return self._speech_samples / self._sample_rate

    def feed(self, pcm: np.ndarray) -> None:
        """Add int16 samples; a trailing partial frame waits for the next call."""
        if self._carry.size:
            pcm = np.concatenate((self._carry, pcm))
        whole = pcm.size - pcm.size % self._frame_len
        if whole:
            # float64 sums of squared int16 are exact, so the result never depends on how
            # the stream was split into blocks.
            frames = pcm[:whole].astype(np.float64).reshape(-1, self._frame_len)
            mean_sq = np.einsum("ij,ij->i", frames, frames) / self._frame_len
            speech_frames = int(np.count_nonzero(mean_sq >= self._threshold_sq))
            self._speech_samples += speech_frames * self._frame_len
        self._carry = pcm[whole:].copy()

    def finish(self) -> float:
        """Judge the trailing partial frame on its own and return the total speech seconds."""
        tail = self._carry
        if tail.size:
            level = tail.astype(np.float64)
            if float(np.dot(level, level)) / tail.size >= self._threshold_sq:
                self._speech_samples += tail.size
            self._carry = np.empty(0, dtype=np.int16)
        return self.speech_seconds
