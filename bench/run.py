"""`make bench`: the bridge under echo load on one core, beside daphne and the yardstick.

For each run: a fresh SQLite database and recordings folder, the server pinned to core 0 with
`taskset` (`make run`'s uvicorn command, or daphne, or the yardstick app), and
`manage.py loadtest --echo --json` (no `--echo` for `listen`) pinned to core 1 (its stand-in
inside it, so both ends are timed on one clock). Prints a Markdown table; `--json-out` keeps
every run's full result.

Run kinds (kind:calls[:end]): `uvicorn`, `daphne`, `yardstick` (echo, Realtime agent);
`live`: uvicorn with a GPT-Live default agent, echo (GPT-Live's track is continuous, so a quiet
GPT-Live agent sends the caller 50 messages a second per call, as echo does); `listen`: uvicorn,
Realtime agent, listen-only (no echo: a quiet Realtime agent sends the caller nothing).

    .venv/bin/python bench/run.py                       # the full bench (about 6 minutes)
    .venv/bin/python bench/run.py --runs uvicorn:100,live:100,listen:100 --seconds 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge_project.serve import free_port, server_command, wait_for_port  # noqa: E402

PYTHON = sys.executable
# kind:calls[:end] -- `end`: every other call hangs up mid-run (loadtest --end-half).
DEFAULT_RUNS = (
    "uvicorn:50,uvicorn:100,live:100,listen:100,uvicorn:150,uvicorn:200,daphne:100,"
    "yardstick:100,uvicorn:150:end"
)
# The server each run kind starts (live and listen are the bridge under uvicorn).
SERVERS = {
    "uvicorn": "uvicorn",
    "daphne": "daphne",
    "yardstick": "yardstick",
    "live": "uvicorn",
    "listen": "uvicorn",
}
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


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if core and shutil.which("taskset") else command


def run_env(workdir: Path, standin_port: int, token: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_ENV": "development",
        "DATABASE_URL": f"sqlite:///{workdir}/bench.sqlite3",
        "RECORDING_STORAGE_PATH": str(workdir / "recordings"),
        "TWILIO_AUTH_TOKEN": token,
        # Its simulated callers are of no particular account: accept them all.
        "TWILIO_ACCOUNT_SID": "",
        "PUBLIC_BASE_URL": PUBLIC,
        "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{standin_port}/v1/realtime",
        "OPENAI_LIVE_URL": f"ws://127.0.0.1:{standin_port}/v1/live/sessions",
        "OPENAI_API_KEY": "sk-bench-" + secrets.token_hex(8),
        "YARDSTICK_REALTIME_URL": f"ws://127.0.0.1:{standin_port}/v1/realtime",
        "LOG_LEVEL": "WARNING",
    }


def command_for(kind: str, port: int) -> list[str]:
    kind = SERVERS[kind]
    if kind == "yardstick":
        # The same uvicorn flags as ours: the comparison is the app, not the server.
        command = server_command("uvicorn", "127.0.0.1", port)
        command[command.index("bridge_project.asgi:application")] = "bench.yardstick:app"
        command[command.index("--lifespan") + 1] = "off"
        return command
    return server_command(kind, "127.0.0.1", port)


@contextlib.contextmanager
def server(kind: str, port: int, env: dict[str, str], workdir: Path) -> Iterator[int]:
    if kind != "yardstick":
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
    if kind == "live":
        made = subprocess.run(
            [PYTHON, "manage.py", "shell", "-c", LIVE_AGENT], cwd=ROOT, env=env, capture_output=True
        )
        if made.returncode != 0:
            raise SystemExit(f"could not make the GPT-Live agent:\n{made.stderr.decode()[-2000:]}")
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(
            pinned(SERVER_CORE, command_for(kind, port)),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, process, 60, what=f"the {kind} server")
        time.sleep(1.0)  # let start-up work (recovery scan, imports) settle
        yield process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def one_run(kind: str, calls: int, seconds: float, *, end_half: bool = False) -> dict:
    if kind not in SERVERS:
        raise SystemExit(f"unknown run kind {kind!r} (kinds: {', '.join(SERVERS)})")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-{calls}-"))
    port, standin_port, token = free_port(), free_port(), secrets.token_hex(16)
    env = run_env(workdir, standin_port, token)
    with server(kind, port, env, workdir) as pid:
        generator = [
            PYTHON, "manage.py", "loadtest", "--url", f"http://127.0.0.1:{port}",
            "--public-base-url", PUBLIC, "--calls", str(calls), "--seconds", str(seconds),
            "--json", "--standin-port", str(standin_port), "--server-pid", str(pid),
        ] + ([] if kind == "listen" else ["--echo"])  # fmt: skip
        generator += ["--end-half"] if end_half else []
        done = subprocess.run(
            pinned(GENERATOR_CORE, generator),
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=seconds + calls + 120,
        )
    if done.returncode != 0:
        raise SystemExit(f"loadtest failed:\n{done.stderr.decode()[-3000:]}")
    result = json.loads(done.stdout)
    # A row is only what its label says if its calls' model sessions spoke that protocol.
    protocol = "live" if kind == "live" else "realtime"
    sessions = result.get("model_sessions", {})
    if not sessions.get(protocol) or sum(sessions.values()) != sessions[protocol]:
        raise SystemExit(f"the {kind} run's model sessions should all be {protocol}: {sessions}")
    result["kind"] = kind
    result["end_half"] = end_half
    result["workdir"] = str(workdir)
    return result


def label(result: dict) -> str:
    if result.get("end_half"):
        return "bridge (uvicorn), every other call ends mid-run"
    return {
        "uvicorn": "bridge (uvicorn), recording + DB",
        "daphne": "bridge (daphne), recording + DB",
        "yardstick": "yardstick (FastAPI forwarder)",
        "live": "bridge (uvicorn), GPT-Live agent",
        "listen": "bridge (uvicorn), listen-only (no echo)",
    }[result["kind"]]


def table(results: list[dict]) -> list[str]:
    yardstick = {r["config"]["calls"]: r for r in results if r["kind"] == "yardstick"}
    lines = [
        "| server | calls | CPU % of core | CPU %/call | vs yardstick | p50/p99/max in (ms) "
        "| p50/p99/max out (ms) | lost in/out | failed | RSS peak (MB) | KB/call | gen lag p99 "
        "| valid |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ys = None if r.get("end_half") else yardstick.get(r["config"]["calls"])
        ratio = (
            f"{r['server_cpu_pct'] / ys['server_cpu_pct']:.2f}"
            if ys is not None and r["kind"] in ("uvicorn", "daphne") and ys["server_cpu_pct"]
            else ""
        )
        i, o = r["inbound_ms"], r["outbound_ms"]
        echo = r["config"]["echo"]
        out = f"{o['p50']:.2f} / {o['p99']:.2f} / {o['max']:.1f}" if echo else "(no echo)"
        lost = f"{r['frames_lost_in']}/{r['frames_lost_out'] if echo else '-'}"
        lines.append(
            f"| {label(r)} | {r['config']['calls']} | {r['server_cpu_pct']:.1f} "
            f"| {r['server_cpu_pct_per_call']:.3f} | {ratio} "
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
    lines.extend(track_costs(results))
    return lines


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
    result = one_run("uvicorn", 10, 5.0)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--runs",
        default=DEFAULT_RUNS,
        help="kind:calls[:end],... (kind: uvicorn, daphne, yardstick, live, listen)",
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
    results = []
    for spec in args.runs.split(","):
        kind, calls, *extra = spec.split(":")
        print(
            f"running {kind} with {calls} calls for {args.seconds:g} s ...",
            file=sys.stderr,
            flush=True,
        )
        results.append(one_run(kind, int(calls), args.seconds, end_half="end" in extra))
    print(f"\nMachine: {machine()}\n")
    print("\n".join(table(results)))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
