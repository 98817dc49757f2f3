"""The stand-in's sense of time and chance: delay ranges, per-connection randomness, and the
uneven audio chunking the service shows.

Every random choice is drawn from a `random.Random` seeded by (stand-in seed, connection index,
purpose), at the moment the triggering event is handled, so a test run is reproducible and one
kind of draw (say, a longer reply) never shifts another (whether a transcription fails).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

Delay = float | tuple[float, float] | Sequence[float]
"""Seconds: a fixed value, or a (low, high) range drawn from uniformly."""


def delay_range(value: Delay, name: str) -> tuple[float, float]:
    """`value` as a (low, high) range of seconds, checked."""
    if isinstance(value, int | float):
        low = high = float(value)
    else:
        bounds = tuple(float(v) for v in value)
        if len(bounds) != 2:
            raise ValueError(f"{name} must be seconds or a (low, high) pair, not {value!r}")
        low, high = bounds
    if not 0 <= low <= high:
        raise ValueError(f"{name} must satisfy 0 <= low <= high, not {value!r}")
    return low, high


def draw(rng: random.Random, bounds: tuple[float, float]) -> float:
    # A draw is taken even for a fixed value, so fixing one delay shifts no other draw.
    return rng.uniform(*bounds)


def connection_rng(seed: int, index: int, purpose: str) -> random.Random:
    # A string seed is hashed with SHA-512, so the stream does not depend on PYTHONHASHSEED.
    return random.Random(f"{seed}:{index}:{purpose}")  # noqa: S311 - simulation, not secrets


def chunk_sizes(
    total: int, nominal: int, unit: int, rng: random.Random | None, *, max_offset: int = 7
) -> list[int]:
    """Split `total` samples into chunks of about `nominal` samples that add up to `total`.

    Without `rng` every chunk but the last is exactly `nominal`. With it each one is `nominal`
    moved by 1..`max_offset` samples either way, never by a multiple of `unit` (the samples in
    a millisecond), so the chunks are not whole milliseconds, as the service's deltas are not.
    Only the last chunk takes what is left, whatever its length.
    """
    if total <= 0:
        return []
    if nominal <= 0:
        return [total]
    offsets = [o for o in range(-max_offset, max_offset + 1) if o % unit]
    if rng is None or not offsets or nominal <= max_offset:
        return [min(nominal, total - start) for start in range(0, total, nominal)]
    sizes: list[int] = []
    remaining = total
    while remaining > nominal + max_offset:
        size = nominal + rng.choice(offsets)
        sizes.append(size)
        remaining -= size
    sizes.append(remaining)
    return sizes
