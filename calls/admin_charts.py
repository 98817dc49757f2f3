"""Charts and the call timeline as SVG geometry: computed here, drawn by the admin's templates.

No JavaScript chart library and no CDN: the back-office must work on a network with no internet
access, and a chart that is plain markup renders anywhere, prints, and can be checked in a
Django test. Coordinates are in viewBox units; the SVG scales to its container.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Formatter = Callable[[float], str]


def clock(ms: float) -> str:
    """An offset on the call as m:ss (h:mm:ss past an hour), as players show it."""
    seconds = max(0, int(ms // 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def nice_step(span: float, *, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `ticks` steps."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


# --- time-series charts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    label: str
    css: str  # the colour comes from the stylesheet, so dark mode and print can restyle it
    values: Sequence[float | None]


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    href: str = ""


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Line:
    css: str
    label: str
    segments: list[str]  # SVG `points` lists; a missing value breaks the line
    dots: list[Dot]


# About the size a chart is shown at, so its text is drawn at about the page's text size.
WIDTH, HEIGHT = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 52.0, 512.0, 10.0, 190.0


@dataclass(frozen=True)
class Chart:
    title: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[Series]
    rects: list[Rect] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    empty: bool = False
    # Every chart has the same frame; the template reads it from here.
    width: int = WIDTH
    height: int = HEIGHT
    left: float = LEFT
    right: float = RIGHT
    top: float = TOP
    bottom: float = BOTTOM


# Category labels beyond this many would overlap: label every k-th bucket instead.
MAX_X_LABELS = 6


def _frame(top_value: float, fmt: Formatter, min_step: float = 0) -> tuple[float, list[Tick]]:
    step = max(min_step, nice_step(top_value))
    top = step * max(1, math.ceil(top_value / step))
    ticks = []
    value = 0.0
    while value <= top + step / 2:
        ticks.append(Tick(position=_y(value, top), label=fmt(value)))
        value += step
    return top, ticks


def _y(value: float, top: float) -> float:
    return BOTTOM - (value / top) * (BOTTOM - TOP) if top else BOTTOM


def _x_ticks(categories: Sequence[str]) -> list[Tick]:
    slot = (RIGHT - LEFT) / max(1, len(categories))
    every = max(1, math.ceil(len(categories) / MAX_X_LABELS))
    return [
        Tick(position=LEFT + slot * (index + 0.5), label=label)
        for index, label in enumerate(categories)
        if index % every == 0
    ]


def stacked_bars(
    *,
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Formatter,
    links: Sequence[str] = (),
    min_step: float = 0,
) -> Chart:
    """One bar per category, the series stacked bottom-up in the order given.

    `min_step` keeps the value axis from ticking finer than the data (1 for counts of calls).
    """
    totals = [sum(one.values[index] or 0 for one in series) for index in range(len(categories))]
    top, y_ticks = _frame(max(totals, default=0), fmt, min_step)
    slot = (RIGHT - LEFT) / max(1, len(categories))
    width = max(1.0, slot * 0.72)
    rects = []
    for index, category in enumerate(categories):
        base = 0.0
        x = LEFT + slot * index + (slot - width) / 2
        for one in series:
            value = one.values[index] or 0
            if value <= 0:
                continue
            y_top, y_base = _y(base + value, top), _y(base, top)
            rects.append(
                Rect(
                    x=round(x, 2),
                    y=round(y_top, 2),
                    width=round(width, 2),
                    height=round(max(0.5, y_base - y_top), 2),
                    css=one.css,
                    title=f"{category}: {one.label} {fmt(value)}",
                    href=links[index] if links else "",
                )
            )
            base += value
    return Chart(
        title=title,
        y_ticks=y_ticks,
        x_ticks=_x_ticks(categories),
        legend=list(series),
        rects=rects,
        empty=not any(totals),
    )


def lines(
    *, title: str, categories: Sequence[str], series: Sequence[Series], fmt: Formatter
) -> Chart:
    """One line per series through the buckets that have a value (gaps stay gaps)."""
    present = [value for one in series for value in one.values if value is not None]
    top, y_ticks = _frame(max(present, default=0), fmt)
    slot = (RIGHT - LEFT) / max(1, len(categories))
    drawn = []
    for one in series:
        segments: list[list[str]] = [[]]
        dots = []
        for index, value in enumerate(one.values):
            if value is None:
                segments.append([])
                continue
            x, y = round(LEFT + slot * (index + 0.5), 2), round(_y(value, top), 2)
            segments[-1].append(f"{x},{y}")
            dots.append(Dot(x=x, y=y, title=f"{categories[index]}: {one.label} {fmt(value)}"))
        drawn.append(
            Line(
                css=one.css,
                label=one.label,
                segments=[" ".join(points) for points in segments if points],
                dots=dots,
            )
        )
    return Chart(
        title=title,
        y_ticks=y_ticks,
        x_ticks=_x_ticks(categories),
        legend=list(series),
        lines=drawn,
        empty=not present,
    )


@dataclass(frozen=True)
class Share:
    label: str
    css: str
    count: int
    percent: float
    x: float
    width: float
    href: str = ""


def shares(parts: Sequence[tuple[str, str, int, str]], *, width: float = WIDTH) -> list[Share]:
    """A 100% bar: (label, css, count, link) parts laid end to end, each as wide as its share."""
    total = sum(count for _, _, count, _ in parts)
    out, x = [], 0.0
    for label, css, count, href in parts:
        fraction = count / total if total else 0.0
        out.append(
            Share(
                label=label,
                css=css,
                count=count,
                percent=round(100 * fraction, 1),
                x=round(x, 2),
                width=round(width * fraction, 2),
                href=href,
            )
        )
        x += width * fraction
    return out


# --- the call timeline ----------------------------------------------------------------------


class SpokenLine(Protocol):
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    speaker: str
    start_ms: int
    interrupted: bool
    title: str


@dataclass(frozen=True)
class Marker:
    x: float
    at_ms: int
    title: str

    @property
    def arrow(self) -> str:
        """A small downward triangle above the lanes, pointing at the moment."""
        return f"M{self.x - 5:.2f},0 L{self.x + 5:.2f},0 L{self.x:.2f},7 Z"


@dataclass(frozen=True)
class Lane:
    name: str
    y: float
    text_y: float


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    left: float
    right: float
    lane_height: float
    lanes: list[Lane]
    label_x: float
    axis_y: float
    label_y: float
    duration_ms: int
    segments: list[Segment]
    barge_ins: list[Marker]
    ticks: list[Tick]

    @property
    def plot_width(self) -> float:
        return self.right - self.left


TIMELINE_WIDTH = 1000
# Room on the right for the last time label, centred on the end of the call.
TIMELINE_LEFT, TIMELINE_RIGHT = 64.0, 976.0
LANE_HEIGHT = 22.0
LANES = {"caller": 8.0, "agent": 38.0}
# Below this a short "yes" would vanish; it is drawn this wide, starting where it starts.
MIN_SEGMENT = 2.0
# Tick steps people read at a glance, in seconds.
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def _timeline_ticks(duration_ms: int, scale: float) -> list[Tick]:
    step_s = next((s for s in TICK_STEPS_S if duration_ms / 1000 / s <= 10), TICK_STEPS_S[-1])
    ticks, at = [], 0
    while at <= duration_ms:
        ticks.append(Tick(position=round(TIMELINE_LEFT + at * scale, 2), label=clock(at)))
        at += step_s * 1000
    return ticks


def call_timeline(*, spoken: Sequence[SpokenLine], duration_ms: int) -> Timeline:
    """Who spoke when, one lane per party, with the agent turns the caller cut short marked.

    System lines are not speech, so they have no lane. A barge-in is drawn where the caller
    stopped hearing the agent: the end of the interrupted agent turn (its end_ms is what was
    actually played, as the bridge measured it).
    """
    duration_ms = max(1, duration_ms, *(line.end_ms for line in spoken))
    scale = (TIMELINE_RIGHT - TIMELINE_LEFT) / duration_ms
    segments, barge_ins = [], []
    for line in spoken:
        if line.speaker not in LANES:
            continue
        x = TIMELINE_LEFT + line.start_ms * scale
        width = max(MIN_SEGMENT, (line.end_ms - line.start_ms) * scale)
        span = f"{clock(line.start_ms)}-{clock(line.end_ms)}"
        segments.append(
            Segment(
                x=round(x, 2),
                y=LANES[line.speaker],
                width=round(min(width, TIMELINE_RIGHT - x), 2),
                speaker=line.speaker,
                start_ms=line.start_ms,
                interrupted=line.interrupted,
                title=f"{line.speaker} {span}: {line.text[:120]}",
            )
        )
        if line.speaker == "agent" and line.interrupted:
            barge_ins.append(
                Marker(
                    x=round(TIMELINE_LEFT + line.end_ms * scale, 2),
                    at_ms=line.end_ms,
                    title=f"barge-in at {clock(line.end_ms)}: the caller cut the agent off",
                )
            )
    return Timeline(
        width=TIMELINE_WIDTH,
        height=84,
        left=TIMELINE_LEFT,
        right=TIMELINE_RIGHT,
        lane_height=LANE_HEIGHT,
        lanes=[Lane(name, y, y + LANE_HEIGHT / 2 + 4) for name, y in LANES.items()],
        label_x=TIMELINE_LEFT - 8,
        axis_y=66.0,
        label_y=80.0,
        duration_ms=duration_ms,
        segments=segments,
        barge_ins=barge_ins,
        ticks=_timeline_ticks(duration_ms, scale),
    )
