"""Benchmark of the per-frame audio work and of the recorder's memory over a long call.

    python -m audio.bench            # full: 20k timed calls per operation, 1- and 60-minute calls
    python -m audio.bench --smoke    # CI: small sizes, a few seconds
    python -m audio.bench --check    # exit 1 if a target is missed (timing is machine-dependent)

Per-frame figures time each call separately (perf_counter_ns) over real-looking audio, so the
mean includes the amortised cost of work done once per many frames (soxr emits output in bursts,
the recorder writes a block about once per second) and max shows the longest single stall.
Recorder memory is tracemalloc's peak (Python and numpy allocations; libsoxr's small fixed
filter state is allocated in C and not traced) while a whole call is simulated: continuous
caller frames, agent responses sent 5x faster than real time, and every fourth one cut by a
barge-in. The file is written to a temporary directory and removed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audio.convert import OpenAIPcmToTwilio, TwilioToOpenAIPcm, encode_base64
from audio.g711 import ulaw_decode, ulaw_encode
from audio.recorder import CallRecorder
from audio.resample import StreamResampler
from audio.synth import voiced_speech

FRAME_MS = 20
FRAME_TARGET_US = 20.0
MEMORY_TARGET_MB = 2.0
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FrameTiming:
    name: str
    mean_us: float
    p99_us: float
    max_us: float
    target_us: float | None

    @property
    def ok(self) -> bool:
        return self.target_us is None or self.mean_us < self.target_us


@dataclass(frozen=True, slots=True)
class MemoryRun:
    minutes: float
    peak_mb: float
    seconds: float
    file_mb: float


def _frames(samples: np.ndarray, frame_len: int) -> list[np.ndarray]:
    usable = samples.size - samples.size % frame_len
    return [samples[i : i + frame_len] for i in range(0, usable, frame_len)]


def _time_calls(
    name: str, call: Callable[[int], object], iterations: int, target_us: float | None
) -> FrameTiming:
    for i in range(min(200, iterations)):  # warm caches and lazily built state
        call(i)
    clock = time.perf_counter_ns
    elapsed = np.empty(iterations, dtype=np.int64)
    for i in range(iterations):
        start = clock()
        call(i)
        elapsed[i] = clock() - start
    us = elapsed / 1000.0
    return FrameTiming(
        name, float(us.mean()), float(np.percentile(us, 99)), float(us.max()), target_us
    )


def measure_frame_ops(iterations: int, workdir: str) -> list[FrameTiming]:
    speech_8k, _ = voiced_speech(8000, 10.0, seed=1)
    speech_24k, _ = voiced_speech(24000, 10.0, seed=2)
    pcm_8k = _frames(speech_8k, 160)
    pcm_24k = _frames(speech_24k, 480)
    ulaw = [ulaw_encode(frame) for frame in pcm_8k]
    agent_bytes = [frame.tobytes() for frame in pcm_24k]
    twilio_b64 = [encode_base64(frame) for frame in ulaw]
    openai_b64 = [encode_base64(frame) for frame in agent_bytes]
    up = StreamResampler(8000, 24000)
    down = StreamResampler(24000, 8000)
    to_openai = TwilioToOpenAIPcm()
    to_twilio = OpenAIPcmToTwilio()
    caller_rec = CallRecorder(os.path.join(workdir, "bench-caller.wav"), agent_format="pcm")
    agent_rec = CallRecorder(os.path.join(workdir, "bench-agent.wav"), agent_format="pcm")
    n_8k, n_24k = len(pcm_8k), len(pcm_24k)
    ops: list[tuple[str, Callable[[int], object], float | None]] = [
        ("g711 decode (160 B)", lambda i: ulaw_decode(ulaw[i % n_8k]), FRAME_TARGET_US),
        ("g711 encode (160 samples)", lambda i: ulaw_encode(pcm_8k[i % n_8k]), FRAME_TARGET_US),
        ("resample 8k->24k stream", lambda i: up.process(pcm_8k[i % n_8k]), FRAME_TARGET_US),
        ("resample 24k->8k stream", lambda i: down.process(pcm_24k[i % n_24k]), FRAME_TARGET_US),
        (
            "recorder add_caller",
            lambda i: caller_rec.add_caller(ulaw[i % n_8k], i * FRAME_MS),
            FRAME_TARGET_US,
        ),
        (
            "recorder add_agent (pcm 24k)",
            lambda i: agent_rec.add_agent(agent_bytes[i % n_24k], i * FRAME_MS),
            FRAME_TARGET_US,
        ),
        ("twilio->openai b64 stream", lambda i: to_openai.convert(twilio_b64[i % n_8k]), None),
        ("openai->twilio b64 stream", lambda i: to_twilio.convert(openai_b64[i % n_24k]), None),
    ]
    try:
        return [_time_calls(name, call, iterations, target) for name, call, target in ops]
    finally:
        caller_rec.finalize()
        agent_rec.finalize()


def simulate_call(path: str, minutes: float, caller_ulaw: bytes, agent_pcm: bytes) -> None:
    """Drive a recorder through a whole call the way the bridge does, frame by frame."""
    recorder = CallRecorder(path, agent_format="pcm")
    frame_bytes = 8 * FRAME_MS  # mu-law 8 kHz
    chunk_bytes = 24 * 2 * 200  # 200 ms of PCM16 24 kHz per OpenAI delta
    turn_ms, response_ms, speedup = 6000, 3000, 5
    end_ms = round(minutes * 60_000)
    agent_cursor = 0
    for now_ms in range(0, end_ms, FRAME_MS):
        offset = (now_ms // FRAME_MS * frame_bytes) % (len(caller_ulaw) - frame_bytes)
        recorder.add_caller(caller_ulaw[offset : offset + frame_bytes], now_ms)
        turn, in_turn = divmod(now_ms, turn_ms)
        # The model streams a response faster than real time, starting 3 s into each turn.
        sending_ms = in_turn - 3000
        if 0 <= sending_ms < response_ms // speedup and sending_ms % (200 // speedup) == 0:
            chunk = agent_pcm[agent_cursor : agent_cursor + chunk_bytes]
            agent_cursor = (agent_cursor + chunk_bytes) % (len(agent_pcm) - chunk_bytes)
            recorder.add_agent(chunk, now_ms)
        if turn % 4 == 3 and in_turn == 4500:
            recorder.clear_agent(now_ms)  # the caller talks over every fourth answer
    recorder.finalize(end_ms)


def measure_memory(minutes: float, workdir: str) -> MemoryRun:
    caller, _ = voiced_speech(8000, 30.0, seed=3)
    agent, _ = voiced_speech(24000, 30.0, seed=4)
    caller_ulaw, agent_pcm = ulaw_encode(caller), agent.tobytes()
    path = os.path.join(workdir, f"memory-{minutes:g}min.wav")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        simulate_call(path, minutes, caller_ulaw, agent_pcm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    file_mb = os.path.getsize(path) / _MB
    os.remove(path)
    return MemoryRun(minutes, peak / _MB, seconds, file_mb)


def render(timings: list[FrameTiming], memory: list[MemoryRun]) -> str:
    lines = [
        f"{'per 20 ms frame':<30} {'mean us':>9} {'p99 us':>9} {'max us':>9}  target",
        "-" * 72,
    ]
    for t in timings:
        target = "-" if t.target_us is None else f"< {t.target_us:g}  {'ok' if t.ok else 'MISS'}"
        lines.append(f"{t.name:<30} {t.mean_us:9.2f} {t.p99_us:9.2f} {t.max_us:9.1f}  {target}")
    lines += [
        "",
        f"{'recorder, simulated call':<30} {'peak MB':>9} {'run s':>9} {'file MB':>9}  target",
        "-" * 72,
    ]
    for m in memory:
        ok = "ok" if m.peak_mb < MEMORY_TARGET_MB else "MISS"
        lines.append(
            f"{f'{m.minutes:g}-minute call':<30} {m.peak_mb:9.3f} {m.seconds:9.2f} "
            f"{m.file_mb:9.1f}  < {MEMORY_TARGET_MB:g}  {ok}"
        )
    if len(memory) >= 2:
        growth = memory[-1].peak_mb - memory[0].peak_mb
        lines.append(
            f"peak growth {memory[0].minutes:g} -> {memory[-1].minutes:g} min: "
            f"{growth * 1024:+.1f} KB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audio.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--smoke", action="store_true", help="small sizes for CI (a few seconds)")
    parser.add_argument("--minutes", type=float, help="length of the long simulated call")
    parser.add_argument("--iterations", type=int, help="timed calls per per-frame operation")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    iterations = args.iterations or (1000 if args.smoke else 20_000)
    long_minutes = args.minutes or (2.0 if args.smoke else 60.0)

    with tempfile.TemporaryDirectory(prefix="audio-bench-") as workdir:
        timings = measure_frame_ops(iterations, workdir)
        memory = [measure_memory(1.0, workdir), measure_memory(long_minutes, workdir)]
    print(f"audio.bench ({'smoke' if args.smoke else 'full'}, {iterations} calls per operation)")
    print(render(timings, memory))
    missed = [t.name for t in timings if not t.ok]
    missed += [f"{m.minutes:g}-minute memory" for m in memory if m.peak_mb >= MEMORY_TARGET_MB]
    if missed:
        print("targets missed: " + ", ".join(missed))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
