"""What a simulated caller does, step by step, on the media stream's clock.

A script is a list of steps run in order. Twilio streams the caller's line continuously, so
every step that takes time sends 20 ms frames: speech for `Speak`, silence for the others,
which only differ in when they end. Steps that wait on the agent end on what the caller has
*received and played*, like a person who waits for the other side to finish talking.

The standard test call (`standard_call`):

    Silence(0.5)                  the line opens
    Speak(1.5, seed=1)            caller turn 1
    AwaitAgentPlayed()            the agent's reply is heard to the end
    Speak(1.5, seed=2)            caller turn 2
    AwaitAgentAudio(then_s=0.8)   the second reply starts arriving; 0.8 s later...
    Speak(1.0, seed=3)            ...the caller talks over it (barge-in)
    AwaitAgentPlayed()            the answer to the interruption is heard
    Silence(0.5)                  then the caller hangs up (stop)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Speak:
    """Speech-like audio for `seconds` (deterministic per seed)."""

    seconds: float
    seed: int = 1
    level_dbfs: float = -18.0


@dataclass(frozen=True)
class Silence:
    seconds: float


@dataclass(frozen=True)
class Until:
    """Silence until `seconds` after the stream's `start` (an absolute time on the call)."""

    seconds: float


@dataclass(frozen=True)
class AwaitAgentAudio:
    """Silence until agent audio arrives after this step began, then `then_s` more.

    `then_s` counts from the first new agent audio, so "0.8 s into the reply" is
    `AwaitAgentAudio(then_s=0.8)` whatever the reply latency was.
    """

    then_s: float = 0.0
    timeout_s: float = 20.0


@dataclass(frozen=True)
class AwaitAgentPlayed:
    """Silence until the agent's reply has been played to the end, then `quiet_s` more (a
    pause, as a person leaves one).

    The reply is audio that arrived after the caller's latest `Speak` ended (any audio, before
    the first), or audio still playing when this step begins; audio that arrived during the
    `Speak` belongs to the reply it interrupted.
    """

    quiet_s: float = 0.4
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Dtmf:
    """A keypad press (a `dtmf` message); takes no time."""

    digit: str


@dataclass(frozen=True)
class Raw:
    """A frame sent exactly as given (text or binary), for robustness tests; takes no time."""

    data: str | bytes


Step = Speak | Silence | Until | AwaitAgentAudio | AwaitAgentPlayed | Dtmf | Raw


class ScriptTimeout(TimeoutError):
    """A step waiting on the agent gave up: the agent never spoke, or never stopped."""


def standard_call(*, barge_in: bool = True, barge_in_after_s: float = 0.8) -> list[Step]:
    """Two caller turns, and (by default) a barge-in during the agent's second reply."""
    steps: list[Step] = [
        Silence(0.5),
        Speak(1.5, seed=1),
        AwaitAgentPlayed(),
        Speak(1.5, seed=2),
    ]
    if barge_in:
        steps += [AwaitAgentAudio(then_s=barge_in_after_s), Speak(1.0, seed=3)]
    return [*steps, AwaitAgentPlayed(), Silence(0.5)]


def timed_call(seconds: float, *, turn_s: float = 1.5) -> list[Step]:
    """Caller turns, each answered and heard, until about `seconds` into the call."""
    steps: list[Step] = [Silence(0.5)]
    turns = max(1, int(seconds // (turn_s + 4.0)))
    for turn in range(turns):
        steps += [Speak(turn_s, seed=turn + 1), AwaitAgentPlayed()]
    return [*steps, Until(seconds)]
