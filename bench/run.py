"""`make bench`: the bridge under echo load on one core, beside the floor, daphne and the
yardstick, then with two workers on the whole machine.

For each run: a fresh SQLite database and recordings folder, the server pinned to core 0 with
`taskset` (`make run`'s uvicorn command, or daphne, or the floor or yardstick app under the same
uvicorn command), and `manage.py loadtest --echo --json` (no `--echo` for `listen`) pinned to
core 1 (its stand-in inside it, so both ends are timed on one clock). Prints a Markdown table;
`--json-out` keeps every run's full result.

Run kinds (kind:calls[:end]): `uvicorn`, `daphne`, `yardstick` (echo, Realtime agent);
`floor`: bench/floor.py, the thinnest Channels forwarder (echo, Realtime), the bridge's CPU is
read over it at the same number of calls ("vs floor", and a line per call count under the
table); `floor-stock`: the same on Channels' stock dispatch (not in the default runs);
`live`: uvicorn with a GPT-Live default agent, echo (GPT-Live's track is continuous, so a quiet
GPT-Live agent sends the caller 50 messages a second per call, as echo does); `listen`: uvicorn,
Realtime agent, listen-only (no echo: a quiet Realtime agent sends the caller nothing).
`workers:N:calls`: the bridge with N uvicorn worker processes and the Redis channel layer
(REDIS_URL=$BENCH_REDIS_URL, default redis://127.0.0.1:6379/12; one SECRET_KEY for all), nothing
pinned, the generator sharing the machine; CPU (percent of one core, so up to 200 here) and RSS
are summed over the server's process tree. Under the table: the most calls that held p99 <= 10
ms both ways with nothing lost, no call failed and the generator on time. Workers runs go up
in calls; once a count misses, the higher counts at the same N are skipped.

The default runs alternate floor and bridge at 100, 150 and 200 calls, so each pair is taken
a minute apart under the same neighbours; the table's "vs floor" and the lines under it compare
each pair.

    .venv/bin/python bench/run.py                       # the full bench (about 12 minutes)
    .venv/bin/python bench/run.py --runs floor:100,uvicorn:100 --seconds 10
    .venv/bin/python bench/run.py --runs workers:2:150,workers:2:200 --seconds 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge_project.serve import (  # noqa: E402
    free_port,
    server_command,
    stop_process_group,
    wait_for_port,
)

PYTHON = sys.executable
# kind:calls[:end] or workers:N:calls -- `end`: every other call hangs up mid-run
# (loadtest --end-half). The floor and the bridge alternate at each call count, so the two of a
# pair are taken minutes apart at most, under the same neighbours.
DEFAULT_RUNS = (
    "floor:100,uvicorn:100,floor:150,uvicorn:150,floor:200,uvicorn:200,"
    "live:100,listen:100,yardstick:100,daphne:100,uvicorn:150:end,"
    "workers:2:150,workers:2:200,workers:2:250,workers:2:300"
)
# The server each run kind starts (live, listen and workers are the bridge under uvicorn).
SERVERS = {
    "uvicorn": "uvicorn",
    "daphne": "daphne",
    "yardstick": "yardstick",
    "floor": "floor",
    "floor-stock": "floor",
    "live": "uvicorn",
    "listen": "uvicorn",
    "workers": "uvicorn",
}
# Apps served by the product's uvicorn command in place of the product (no database).
APPS = {"yardstick": "bench.yardstick:app", "floor": "bench.floor:application"}
# The live runs' default agent, made in the fresh database before the server starts: every
# simulated call reaches the default agent (its number has no agent of its own).
LIVE_AGENT = """
from agents.services import agent_create
agent_create(fields={
    "name": "Bench GPT-Live", "slug": "bench-gpt-live", "backend": "gpt-live",
    "model": "gpt-live-1.1", "voice": "marin", "is_default": True,
    "instructions": "You are a friendly, concise phone assistant.",
})
"""
PUBLIC = "https://bench.example.test"
SERVER_CORE = "0"
GENERATOR_CORE = "1"
# More than one worker needs the Redis channel layer; a db number of the bench's own.
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
# "Held": both ways' p99 at or under this, nothing lost, no call failed, the generator on time.
HOLD_P99_MS = 10.0


@dataclass(frozen=True)
class RunSpec:
    kind: str
    calls: int
    workers: int = 1
    end_half: bool = False


def parse_spec(spec: str) -> RunSpec:
    """`kind:calls[:end]`, or `workers:N:calls[:end]`."""
    kind, *rest = spec.strip().split(":")
    if kind not in SERVERS:
        raise SystemExit(f"unknown run kind {kind!r} (kinds: {', '.join(SERVERS)})")
    workers = 1
    if kind == "workers":
        if len(rest) < 2:
            raise SystemExit(f"{spec!r}: a workers run is workers:N:calls")
        workers, rest = int(rest[0]), rest[1:]
    if not rest:
        raise SystemExit(f"{spec!r}: no number of calls")
    return RunSpec(kind, int(rest[0]), workers, "end" in rest[1:])


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if core and shutil.which("taskset") else command


def run_env(workdir: Path, standin_port: int, token: str) -> dict[str, str]:
    realtime_url = f"ws://127.0.0.1:{standin_port}/v1/realtime"
    return {
        **os.environ,
        "DJANGO_ENV": "development",
        "DATABASE_URL": f"sqlite:///{workdir}/bench.sqlite3",
        "RECORDING_STORAGE_PATH": str(workdir / "recordings"),
        "TWILIO_AUTH_TOKEN": token,
        # Its simulated callers are of no particular account: accept them all.
        "TWILIO_ACCOUNT_SID": "",
        "PUBLIC_BASE_URL": PUBLIC,
        "OPENAI_REALTIME_URL": realtime_url,
        "OPENAI_LIVE_URL": f"ws://127.0.0.1:{standin_port}/v1/live/sessions",
        "OPENAI_API_KEY": "sk-bench-" + secrets.token_hex(8),
        "YARDSTICK_REALTIME_URL": realtime_url,
        "FLOOR_REALTIME_URL": realtime_url,
        "LOG_LEVEL": "WARNING",
    }


def command_for(kind: str, port: int, env: Mapping[str, str], workers: int = 1) -> list[str]:
    server = SERVERS[kind]
    if server in APPS:
        # The same uvicorn flags as ours: the comparison is the app, not the server.
        command = server_command("uvicorn", "127.0.0.1", port, env)
        command[command.index("bridge_project.asgi:application")] = APPS[server]
        command[command.index("--lifespan") + 1] = "off"
        return command
    if server == "uvicorn":
        # `workers` > 1: uvicorn's supervisor with that many processes (serve.py adds the flag).
        return server_command("uvicorn", "127.0.0.1", port, env, workers=workers)
    return server_command(server, "127.0.0.1", port, env)


@contextlib.contextmanager
def server(
    spec: RunSpec, port: int, env: dict[str, str], workdir: Path, core: str
) -> Iterator[int]:
    if SERVERS[spec.kind] not in APPS:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
    if spec.kind == "live":
        made = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", LIVE_AGENT], cwd=ROOT, env=env, capture_output=True
        )
        if made.returncode != 0:
            raise SystemExit(f"could not make the GPT-Live agent:\n{made.stderr.decode()[-2000:]}")
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            pinned(core, command_for(spec.kind, port, env, spec.workers)),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, process, 60, what=f"the {spec.kind} server")
        # Let start-up work (recovery scan, imports) settle; workers start one after another.
        time.sleep(1.0 + spec.workers)
        yield process.pid
    finally:
        # The whole session: a supervisor's workers too.
        stop_process_group(process, timeout_s=30)


def one_run(spec: RunSpec, seconds: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec.kind}-{spec.calls}-"))
    port, standin_port, token = free_port(), free_port(), secrets.token_hex(16)
    env = run_env(workdir, standin_port, token)
    # Several workers own the machine, the generator included: nothing pinned.
    server_core, generator_core = ("", "") if spec.workers > 1 else (SERVER_CORE, GENERATOR_CORE)
    if spec.workers > 1:
        env["REDIS_URL"] = BENCH_REDIS_URL
        # One key for every worker: the stream token the webhook's worker signs is checked by
        # whichever worker takes the WebSocket (development otherwise makes one up per process).
        env["SECRET_KEY"] = "bench-" + secrets.token_urlsafe(40)
    if spec.kind == "floor-stock":
        env["FLOOR_STOCK_CHANNELS"] = "1"
    with server(spec, port, env, workdir, server_core) as pid:
        generator = [
            PYTHON, "manage.py", "loadtest", "--url", f"http://127.0.0.1:{port}",
            "--public-base-url", PUBLIC, "--calls", str(spec.calls), "--seconds", str(seconds),
            "--json", "--standin-port", str(standin_port), "--server-pid", str(pid),
        ] + ([] if spec.kind == "listen" else ["--echo"])  # fmt: skip
        generator += ["--end-half"] if spec.end_half else []
        done = subprocess.run(
            pinned(generator_core, generator),
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=seconds + spec.calls + 120,
        )
    if done.returncode != 0:
        raise SystemExit(f"loadtest failed:\n{done.stderr.decode()[-3000:]}")
    result = json.loads(done.stdout)
    # A row is only what its label says if its calls' model sessions spoke that protocol (the
    # floor and the yardstick speak Realtime).
    protocol = "live" if spec.kind == "live" else "realtime"
    sessions = result.get("model_sessions", {})
    if not sessions.get(protocol) or sum(sessions.values()) != sessions[protocol]:
        raise SystemExit(
            f"the {spec.kind} run's model sessions should all be {protocol}: {sessions}"
        )
    result["kind"] = spec.kind
    result["end_half"] = spec.end_half
    result["workers"] = spec.workers
    result["workdir"] = str(workdir)
    return result


def label(result: dict) -> str:
    if result.get("end_half"):
        return "bridge (uvicorn), every other call ends mid-run"
    if result["kind"] == "workers":
        return f"bridge (uvicorn), {result['workers']} workers + generator, unpinned"
    return {
        "uvicorn": "bridge (uvicorn), recording + DB",
        "daphne": "bridge (daphne), recording + DB",
        "yardstick": "yardstick (FastAPI forwarder)",
        "floor": "floor (thinnest Channels forwarder)",
        "floor-stock": "floor, stock Channels dispatch",
        "live": "bridge (uvicorn), GPT-Live agent",
        "listen": "bridge (uvicorn), listen-only (no echo)",
    }[result["kind"]]


def cpu_ratio(result: dict, base: dict | None) -> str:
    if base is None or base is result or not base["server_cpu_pct"]:
        return ""
    return f"{result['server_cpu_pct'] / base['server_cpu_pct']:.2f}"


def by_calls(results: list[dict], kind: str) -> dict[int, dict]:
    """The steady (not end-half) run of `kind` at each number of calls (the last, if several)."""
    return {r["config"]["calls"]: r for r in results if r["kind"] == kind and not r.get("end_half")}


def table(results: list[dict]) -> list[str]:
    yardstick, floor = by_calls(results, "yardstick"), by_calls(results, "floor")
    lines = [
        "| server | calls | CPU % of core | CPU %/call | vs floor | vs yardstick "
        "| p50/p99/max in (ms) | p50/p99/max out (ms) | lost in/out | failed | RSS peak (MB) "
        "| KB/call | gen lag p99 | valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        calls = r["config"]["calls"]
        steady = not r.get("end_half")
        vs_floor = cpu_ratio(r, floor.get(calls)) if steady else ""
        bridge = r["kind"] in ("uvicorn", "daphne")
        vs_yardstick = cpu_ratio(r, yardstick.get(calls)) if steady and bridge else ""
        i, o = r["inbound_ms"], r["outbound_ms"]
        echo = r["config"]["echo"]
        out = f"{o['p50']:.2f} / {o['p99']:.2f} / {o['max']:.1f}" if echo else "(no echo)"
        lost = f"{r['frames_lost_in']}/{r['frames_lost_out'] if echo else '-'}"
        lines.append(
            f"| {label(r)} | {calls} | {r['server_cpu_pct']:.1f} "
            f"| {r['server_cpu_pct_per_call']:.3f} | {vs_floor} | {vs_yardstick} "
            f"| {i['p50']:.2f} / {i['p99']:.2f} / {i['max']:.1f} | {out} "
            f"| {lost} | {r['calls_failed']} "
            f"| {r['server_rss_mb_peak']:.0f} | {r['server_rss_kb_per_call']:.0f} "
            f"| {r['generator_lag_ms']['p99']:.2f} | {'yes' if r['valid'] else 'NO'} |"
        )
    for r in results:
        if r.get("end_half"):
            i, o = r["ending_inbound_ms"], r["ending_outbound_ms"]
            lines.append(
                f"\nWhile half of the {r['config']['calls']} calls ended: the other calls' p99 "
                f"{i['p99']:.2f} ms in, {o['p99']:.2f} ms out (max {i['max']:.1f} / "
                f"{o['max']:.1f} ms)."
            )
    lines.extend(floor_pairs(results))
    lines.extend(track_costs(results))
    lines.extend(workers_capacity(results))
    return lines


def p99s(result: dict) -> str:
    return f"{result['inbound_ms']['p99']:.2f} / {result['outbound_ms']['p99']:.2f} ms"


def floor_pairs(results: list[dict]) -> list[str]:
    """The bridge over the floor at each number of calls both were run at."""
    floor, bridge = by_calls(results, "floor"), by_calls(results, "uvicorn")
    lines = []
    for calls in sorted(floor.keys() & bridge.keys()):
        f, b = floor[calls], bridge[calls]
        invalid = [name for name, r in (("bridge", b), ("floor", f)) if not r["valid"]]
        note = f" (invalid: {', '.join(invalid)})" if invalid else ""
        lines.append(
            f"At {calls} calls: bridge/floor CPU {cpu_ratio(b, f) or '-'}, bridge p99 in/out "
            f"{p99s(b)}, floor p99 in/out {p99s(f)}{note}."
        )
    return ["", *lines] if lines else []


def track_costs(results: list[dict]) -> list[str]:
    """What sending the caller 50 messages a second per call costs: each echo row's CPU over
    the listen-only row at the same number of calls."""
    steady = [r for r in results if not r.get("end_half")]
    lines = []
    for quiet in (r for r in steady if r["kind"] == "listen"):
        calls = quiet["config"]["calls"]
        costs = [
            f"{name} +{r['server_cpu_pct'] - quiet['server_cpu_pct']:.1f} points "
            f"({(r['server_cpu_pct'] - quiet['server_cpu_pct']) / calls:.3f} per call"
            f"{'' if r['valid'] else ', an invalid run'})"
            for kind, name in (("uvicorn", "Realtime echo"), ("live", "GPT-Live echo"))
            for r in steady
            if r["kind"] == kind and r["config"]["calls"] == calls
        ]
        if costs:
            invalid = "" if quiet["valid"] else ", an invalid run"
            lines.append(
                f"\nAt {calls} calls, over listen-only ({quiet['server_cpu_pct']:.1f} % of a "
                f"core{invalid}): {'; '.join(costs)}."
            )
    return lines


def missed(result: dict) -> str:
    """Why a run did not hold the line ("" if it did)."""
    reasons = [
        f"p99 in {result['inbound_ms']['p99']:.1f} ms"
        if result["inbound_ms"]["p99"] > HOLD_P99_MS
        else "",
        f"p99 out {result['outbound_ms']['p99']:.1f} ms"
        if result["outbound_ms"]["p99"] > HOLD_P99_MS
        else "",
        f"{result['frames_lost_in']}/{result['frames_lost_out']} frames lost"
        if result["frames_lost_in"] or result["frames_lost_out"]
        else "",
        f"{result['calls_failed']} calls failed" if result["calls_failed"] else "",
        "generator late (invalid)" if not result["valid"] else "",
    ]
    return ", ".join(filter(None, reasons))


def workers_capacity(results: list[dict]) -> list[str]:
    """Calls per machine: the most calls each worker count carried within the line."""
    lines = []
    for workers in sorted({r["workers"] for r in results if r["kind"] == "workers"}):
        runs = sorted(
            (r for r in results if r["kind"] == "workers" and r["workers"] == workers),
            key=lambda r: r["config"]["calls"],
        )
        held = [r["config"]["calls"] for r in runs if not missed(r)]
        tried = "; ".join(
            f"{r['config']['calls']}: {missed(r) or 'held'} "
            f"({r['server_cpu_pct']:.0f} % of a core, p99 {p99s(r)})"
            for r in runs
        )
        best = f"{max(held)} calls" if held else "none of the counts tried"
        lines.append(
            f"\nCalls per machine at p99 <= {HOLD_P99_MS:g} ms both ways, nothing lost, with "
            f"{workers} workers (server and generator sharing the machine, unpinned): {best}. "
            f"Tried {tried}."
        )
    return lines


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {system}"


def smoke() -> int:
    """Not a timed test: the figures are printed, only losses and failures fail it."""
    global SERVER_CORE, GENERATOR_CORE
    SERVER_CORE = GENERATOR_CORE = ""
    result = one_run(RunSpec("uvicorn", 10), 5.0)
    print("\n".join(table([result])))
    problems = [
        f"{result['calls_failed']} call(s) failed: {result['failures']}"
        if result["calls_failed"]
        else "",
        f"{result['frames_lost_in']} frame(s) lost inbound" if result["frames_lost_in"] else "",
        f"{result['frames_lost_out']} frame(s) lost outbound" if result["frames_lost_out"] else "",
        f"{result['foreign_frames']} frame(s) of another call" if result["foreign_frames"] else "",
    ]
    for problem in filter(None, problems):
        print(f"LOADTEST SMOKE FAILURE: {problem}", file=sys.stderr)
    return 1 if any(problems) else 0


def already_missed(spec: RunSpec, results: list[dict]) -> dict | None:
    """A workers run at fewer calls (same worker count) that missed: more calls would only
    saturate the machine, so they are skipped."""
    if spec.kind != "workers":
        return None
    return next(
        (
            r
            for r in results
            if r["kind"] == "workers"
            and r["workers"] == spec.workers
            and r["config"]["calls"] < spec.calls
            and missed(r)
        ),
        None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs",
        default=DEFAULT_RUNS,
        help=f"kind:calls[:end] or workers:N:calls, comma-separated (kinds: {', '.join(SERVERS)})",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI guard: 10 calls for 5 s, unpinned; fails if a frame is lost or a call fails",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        return smoke()
    specs = [parse_spec(spec) for spec in args.runs.split(",")]
    results: list[dict] = []
    for spec in specs:
        lower = already_missed(spec, results)
        if lower is not None:
            print(
                f"skipping {spec.kind}:{spec.workers}:{spec.calls}: "
                f"{lower['config']['calls']} calls already missed ({missed(lower)})",
                file=sys.stderr,
            )
            continue
        workers = f" on {spec.workers} workers" if spec.kind == "workers" else ""
        print(
            f"running {spec.kind}{workers} with {spec.calls} calls for {args.seconds:g} s ...",
            file=sys.stderr,
            flush=True,
        )
        results.append(one_run(spec, args.seconds))
    print(f"\nMachine: {machine()}\n")
    print("\n".join(table(results)))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
