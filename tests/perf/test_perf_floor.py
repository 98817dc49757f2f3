"""bench/floor.py, the bench's floor row, forwards (not a timed test): served by `make bench`'s
own command for it (the product's uvicorn command with the floor's app, in a subprocess, so its
own settings are the only ones it sees), 10 echo calls for a few seconds lose no frame, fail no
call and open Realtime sessions only; the figures are printed."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from support import free_port

from bridge_project.serve import stop_process_group, wait_for_port
from simulator.load import LoadConfig, run_load, summary

ROOT = Path(__file__).resolve().parents[2]
CALLS = 10
SECONDS = 2.0


def bench_run() -> ModuleType:
    """bench/run.py (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def floor_server() -> Iterator[tuple[str, int]]:
    port, standin_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_SETTINGS_MODULE"  # the floor must not need the product's settings
    }
    env["FLOOR_REALTIME_URL"] = f"ws://127.0.0.1:{standin_port}/v1/realtime"
    command = bench_run().command_for("floor", port, env)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process, 30, what="the floor server")
        yield f"http://127.0.0.1:{port}", standin_port
    finally:
        stop_process_group(process)
        assert process.stderr is not None
        errors = process.stderr.read().decode(errors="replace")
        assert "Traceback" not in errors, errors[-3000:]


def test_floor_forwards_every_frame_both_ways(floor_server: tuple[str, int]) -> None:
    url, standin_port = floor_server
    config = LoadConfig(
        url=url,
        calls=CALLS,
        seconds=SECONDS,
        ramp_s=0.5,
        echo=True,
        auth_token=None,  # the floor checks no signature
        public_base_url=url,
        standin_port=standin_port,
    )
    result = asyncio.run(run_load(config))
    print("\n".join(summary(result)))
    assert result.calls_failed == 0, result.failures
    assert result.frames_lost_in == 0
    assert result.frames_lost_out == 0
    assert result.foreign_frames == 0
    assert result.frames_sent >= CALLS * SECONDS / 0.02 * 0.9
    assert result.inbound_ms["count"] > 0 and result.outbound_ms["count"] > 0
    assert result.model_sessions["realtime"] == CALLS
    assert sum(result.model_sessions.values()) == CALLS
