"""The SVG geometry behind the analytics charts and the call timeline (no database)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from calls import admin_charts as charts


@pytest.mark.parametrize(
    ("span", "step"),
    [(0, 1.0), (4, 1), (10, 2.5), (37, 10), (120, 50), (0.9, 0.25), (1234, 500)],
)
def test_nice_step(span, step) -> None:
    assert charts.nice_step(span) == pytest.approx(step)


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0:00"), (999, "0:00"), (61_500, "1:01"), (3_725_000, "1:02:05")]
)
def test_clock(ms, text) -> None:
    assert charts.clock(ms) == text


def test_stacked_bars_scale_to_the_tallest_stack() -> None:
    chart = charts.stacked_bars(
        title="Calls",
        categories=["a", "b", "c"],
        series=[
            charts.Series("done", "x", [2, 0, 6]),
            charts.Series("failed", "y", [2, None, 2]),
        ],
        fmt=lambda v: f"{v:g}",
        links=["/a", "/b", "/c"],
    )
    # The top of the value axis is a round number at or above the tallest stack (8).
    assert [tick.label for tick in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    plot = charts.BOTTOM - charts.TOP
    by_title = {rect.title: rect for rect in chart.rects}
    assert set(by_title) == {"a: done 2", "a: failed 2", "c: done 6", "c: failed 2"}
    assert by_title["c: done 6"].height == pytest.approx(plot * 6 / 8, abs=0.01)
    # Stacked: "failed" sits on top of "done" in the same column.
    done, failed = by_title["c: done 6"], by_title["c: failed 2"]
    assert failed.y + failed.height == pytest.approx(done.y, abs=0.01)
    assert failed.x == done.x and done.href == "/c"
    assert not chart.empty


def test_an_empty_period_is_an_empty_chart() -> None:
    chart = charts.stacked_bars(
        title="Calls", categories=["a"], series=[charts.Series("n", "x", [0])], fmt=str
    )
    assert chart.empty and chart.rects == []


def test_lines_break_where_a_value_is_missing() -> None:
    chart = charts.lines(
        title="Latency",
        categories=["a", "b", "c", "d"],
        series=[charts.Series("avg", "x", [100.0, 200.0, None, 400.0])],
        fmt=lambda v: f"{v:.0f} ms",
    )
    [line] = chart.lines
    assert len(line.segments) == 2
    assert [dot.title for dot in line.dots] == ["a: avg 100 ms", "b: avg 200 ms", "d: avg 400 ms"]
    assert line.dots[2].y == pytest.approx(charts.TOP)  # 400 is the top of the axis
    assert line.dots[0].y > line.dots[1].y  # higher values are drawn higher


def test_category_labels_are_thinned_to_stay_readable() -> None:
    categories = [str(n) for n in range(60)]
    chart = charts.stacked_bars(
        title="t", categories=categories, series=[charts.Series("n", "x", [1] * 60)], fmt=str
    )
    assert len(chart.x_ticks) <= charts.MAX_X_LABELS
    assert chart.x_ticks[0].label == "0"


def test_shares_split_the_width() -> None:
    parts = charts.shares([("p", "a", 1, ""), ("n", "b", 3, ""), ("u", "c", 0, "")], width=100)
    assert [(s.x, s.width, s.percent) for s in parts] == [(0, 25, 25), (25, 75, 75), (100, 0, 0)]
    assert [s.percent for s in charts.shares([("p", "a", 0, "")])] == [0]


@dataclass
class Line:
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool = False


def test_the_timeline_places_turns_and_marks_barge_ins() -> None:
    timeline = charts.call_timeline(
        spoken=[
            Line("caller", "hi", 0, 1000),
            Line("agent", "hello there", 1500, 2500, interrupted=True),
            Line("system", "transferred", 2000, 2000),
            Line("caller", "wait", 2400, 3000),
            Line("agent", "ok", 3999, 4000),
        ],
        duration_ms=4000,
    )
    scale = (charts.TIMELINE_RIGHT - charts.TIMELINE_LEFT) / 4000
    assert [s.speaker for s in timeline.segments] == ["caller", "agent", "caller", "agent"]
    caller, agent = timeline.segments[0], timeline.segments[1]
    assert caller.y == charts.LANES["caller"] and agent.y == charts.LANES["agent"]
    assert agent.x == pytest.approx(charts.TIMELINE_LEFT + 1500 * scale, abs=0.01)
    assert agent.width == pytest.approx(1000 * scale, abs=0.01) and agent.interrupted
    # A 1 ms "ok" is still visible, and never drawn past the end of the plot.
    last = timeline.segments[-1]
    assert last.width >= 0 and last.x + last.width <= charts.TIMELINE_RIGHT + 0.01
    [barge_in] = timeline.barge_ins
    assert barge_in.at_ms == 2500
    assert barge_in.x == pytest.approx(charts.TIMELINE_LEFT + 2500 * scale, abs=0.01)
    assert [tick.label for tick in timeline.ticks] == ["0:00", "0:01", "0:02", "0:03", "0:04"]


def test_the_timeline_stretches_to_the_last_word() -> None:
    # A transcript running past the recording's end is not clipped.
    timeline = charts.call_timeline(spoken=[Line("caller", "x", 0, 9000)], duration_ms=5000)
    assert timeline.duration_ms == 9000
    assert timeline.segments[0].width == pytest.approx(timeline.plot_width)
