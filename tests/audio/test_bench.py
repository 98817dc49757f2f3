"""The benchmark's CI form: small sizes, must run and print its table."""

from __future__ import annotations

import pytest

from audio import bench


@pytest.mark.slow
def test_smoke_run_prints_every_figure(capsys):
    assert bench.main(["--smoke", "--iterations", "300", "--minutes", "1.5"]) == 0
    out = capsys.readouterr().out
    for row in (
        "g711 decode",
        "g711 encode",
        "resample 8k->24k",
        "resample 24k->8k",
        "recorder add_caller",
        "recorder add_agent",
        "1-minute call",
        "1.5-minute call",
        "peak growth",
    ):
        assert row in out


def test_render_marks_missed_targets():
    timings = [
        bench.FrameTiming("fast op", 1.0, 2.0, 3.0, 20.0),
        bench.FrameTiming("slow op", 25.0, 30.0, 40.0, 20.0),
    ]
    memory = [bench.MemoryRun(1, 0.5, 0.1, 3.7), bench.MemoryRun(60, 2.5, 6.0, 220.0)]
    table = bench.render(timings, memory)
    assert "fast op" in table and "MISS" in table
    assert table.count("ok") == 2
