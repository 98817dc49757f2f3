"""bench/run.py's report from made-up results (nothing is run): the floor beside the bridge at
each call count, "vs floor", and calls per machine with workers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_report", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def made_up(kind: str, calls: int, cpu: float, p99: float, **extra: object) -> dict:
    times = {"count": 1, "p50": 0.5, "p95": 1.0, "p99": p99, "max": p99 * 2}
    return {
        "kind": kind,
        "end_half": False,
        "workers": 1,
        "config": {"calls": calls, "echo": True},
        "server_cpu_pct": cpu,
        "server_cpu_pct_per_call": cpu / calls,
        "inbound_ms": times,
        "outbound_ms": times,
        "frames_lost_in": 0,
        "frames_lost_out": 0,
        "calls_failed": 0,
        "server_rss_mb_peak": 100.0,
        "server_rss_kb_per_call": 500.0,
        "generator_lag_ms": times,
        "valid": True,
        **extra,
    }


def test_specs(bench: ModuleType) -> None:
    assert bench.parse_spec("workers:2:300") == bench.RunSpec("workers", 300, 2, False)
    assert bench.parse_spec("uvicorn:150:end") == bench.RunSpec("uvicorn", 150, 1, True)
    assert bench.parse_spec("floor:100") == bench.RunSpec("floor", 100)
    for spec in bench.DEFAULT_RUNS.split(","):
        bench.parse_spec(spec)  # every default run is a known kind
    with pytest.raises(SystemExit):
        bench.parse_spec("nginx:100")


def test_the_bridge_is_read_over_the_floor(bench: ModuleType) -> None:
    results = [
        made_up("floor", 100, 40.0, 2.0),
        made_up("uvicorn", 100, 60.0, 4.0),
        made_up("listen", 100, 30.0, 3.0),
    ]
    lines = bench.table(results)
    bridge_row = next(line for line in lines if line.startswith("| bridge (uvicorn), recording"))
    assert "| 1.50 |" in bridge_row
    assert (
        "At 100 calls: bridge/floor CPU 1.50, bridge p99 in/out 4.00 / 4.00 ms, floor p99 "
        "in/out 2.00 / 2.00 ms." in lines
    )


def test_calls_per_machine_is_the_most_that_held(bench: ModuleType) -> None:
    results = [
        made_up("workers", 150, 120.0, 3.0, workers=2),
        made_up("workers", 200, 150.0, 8.0, workers=2),
        made_up("workers", 250, 190.0, 40.0, workers=2),
    ]
    (line,) = bench.workers_capacity(results)
    assert "with 2 workers" in line and ": 200 calls." in line
    assert "250: p99 in 40.0 ms, p99 out 40.0 ms" in line
    # Past a miss, more calls at the same worker count are skipped.
    assert bench.already_missed(bench.RunSpec("workers", 300, 2), results) is results[2]
    assert bench.already_missed(bench.RunSpec("workers", 300, 3), results) is None
