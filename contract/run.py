"""`make api-contract`: the OpenAPI schema at /api/schema/ checked against the live server.

A fresh database (a temporary SQLite file; with DATABASE_URL=postgres://... a new database on
that server, created and dropped here), `manage.py migrate`, a seeded call, agent and token
(contract/seed.py), the server started as `make run` starts it (uvicorn, bridge_project.serve's
command), then `schemathesis run` with every check, a fixed number of examples per operation and
a seed (printed, so a failure can be replayed with --seed), under a wall-clock limit. Any
finding, error or timeout exits non-zero. The database is thrown away: writes are safe.

    .venv/bin/python contract/run.py                     # SQLite, a random seed
    .venv/bin/python contract/run.py --seed 1234 --examples 50
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python contract/run.py

Excluded from fuzzing (--exclude-path): /api/status, the live feed, an endless
text/event-stream (each request would only end at the request timeout). Its refusals (401, 403,
405, 429) are JSON like the rest and are covered by tests/api/test_api_status.py. Everything
else, the recording download included, is fuzzed. contract/hooks.py points generated requests
at the seeded rows and keeps positive periods valid (the one rule between query parameters
OpenAPI cannot state); contract/schemathesis.toml allows the recording's 416 (a Range past the
end of the stored file) among a valid request's answers. Nothing else is relaxed. The throttle
is lifted for the run (429 is tested in the suite), and the server runs with DEBUG off.

Why here: beside bench/run.py, the other driver that serves the app and works it from outside;
`make api-contract` names it, and it is not part of the installed packages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge_project.serve import (  # noqa: E402
    free_port,
    server_command,
    stop_process_group,
    wait_for_port,
)

PYTHON = sys.executable
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
# Per-operation settings (the statuses a state-dependent refusal may have); see the file.
CONFIG_FILE = ROOT / "contract" / "schemathesis.toml"
DEFAULT_EXAMPLES = 25
DEFAULT_TIMEOUT_S = 900.0
SERVER_READY_TIMEOUT_S = 60.0
# Not fuzzed: see the module docstring.
EXCLUDED_PATHS = ("/api/status",)
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")
# TWILIO_PHONE_NUMBER of the run: the caller id POST /api/calls may use (contract/hooks.py).
CONTRACT_FROM_NUMBER = "+18005550199"


@dataclass(frozen=True)
class Seeded:
    token: str
    call_id: str
    agent_slug: str


def log(message: str) -> None:
    print(f"[api-contract] {message}", flush=True)


# --- the throwaway database -----------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _postgres_admin(url: str, statement: str) -> None:
    import psycopg

    # Through the maintenance database, as Django creates its test database: the one the URL
    # names need not exist. Autocommit: CREATE/DROP DATABASE cannot run in a transaction.
    admin_url = _with_database(url, "postgres").replace("pgsql://", "postgresql://", 1)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


@contextlib.contextmanager
def throwaway_database(workdir: Path, base_url: str | None) -> Iterator[str]:
    """The DATABASE_URL of a database made for this run, gone when the run ends.

    On PostgreSQL a database of its own (never the one named in DATABASE_URL, which the test
    suite may be using for `test_<name>`); otherwise a SQLite file in the run's folder.
    """
    if not base_url or base_url.startswith("sqlite"):
        yield f"sqlite:///{workdir / 'contract.sqlite3'}"
        return
    scheme = urlsplit(base_url).scheme
    if scheme not in POSTGRES_SCHEMES:
        raise SystemExit(f"DATABASE_URL: only PostgreSQL or SQLite are supported (got {scheme})")
    name = f"api_contract_{os.getpid()}_{secrets.token_hex(3)}"
    _postgres_admin(base_url, f'CREATE DATABASE "{name}"')
    log(f"database: PostgreSQL {name} (created for this run)")
    try:
        yield _with_database(base_url, name)
    finally:
        # FORCE: a connection the server left behind must not keep the database alive.
        _postgres_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"database: {name} dropped")


# --- the server ------------------------------------------------------------------------------


def run_env(workdir: Path, database_url: str) -> dict[str, str]:
    """The server's environment: development defaults, made to answer like production."""
    return {
        **os.environ,
        "DJANGO_ENV": "development",
        # A 500 must be the API's JSON error, as in production, not Django's debug page.
        "DEBUG": "false",
        "DATABASE_URL": database_url,
        "RECORDING_STORAGE_PATH": str(workdir / "recordings"),
        # The in-memory channel layer and cache: the run needs no Redis, and throttle counts
        # start at zero.
        "REDIS_URL": "",
        # The fuzzer's few thousand requests a minute are one user's: the throttle would turn
        # them into 429s, which says nothing about the schema (429 is tested in the suite).
        "API_THROTTLE_USER": "1000000/min",
        "API_THROTTLE_OUTBOUND_CALLS": "1000000/min",
        # Outbound calls go to the stand-in (twilio_rest_standin) with its account, whatever
        # this shell has configured, from a number of ours.
        "TWILIO_ACCOUNT_SID": "",
        "TWILIO_AUTH_TOKEN": "",
        "TWILIO_PHONE_NUMBER": CONTRACT_FROM_NUMBER,
        # Placed calls stay queued at the stand-in (nothing dials): no cap on them either.
        "OUTBOUND_MAX_CONCURRENT_PER_AGENT": "1000000",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def manage(env: Mapping[str, str], *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=dict(env), check=True)


def seed_database(env: Mapping[str, str]) -> Seeded:
    result = subprocess.run(
        [PYTHON, str(ROOT / "contract" / "seed.py")],
        cwd=ROOT,
        env=dict(env),
        check=True,
        capture_output=True,
        text=True,
    )
    values = json.loads(result.stdout.strip().splitlines()[-1])
    return Seeded(token=values["token"], call_id=values["call_id"], agent_slug=values["agent_slug"])


@contextlib.contextmanager
def twilio_rest_standin(env: dict[str, str], log_path: Path) -> Iterator[None]:
    """The Twilio REST stand-in (simulator.twilio.rest) the server's outbound calls go to, so
    POST /api/calls is answered with its 201 (and the call's schema checked) instead of a 502
    for a Twilio nobody can reach. It dials nothing: the calls stay queued."""
    port = free_port()
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            [PYTHON, "-m", "simulator.twilio.rest", "--port", str(port)],
            cwd=ROOT, env=dict(env), stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_port(port, process, SERVER_READY_TIMEOUT_S, what="the Twilio REST stand-in")
            env["TWILIO_API_BASE_URL"] = f"http://127.0.0.1:{port}"
            yield
        finally:
            stop_process_group(process, timeout_s=15)


@contextlib.contextmanager
def served(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """`make run`'s uvicorn command on a free loopback port; stopped (its group) on the way out."""
    port = free_port()
    command = server_command("uvicorn", "127.0.0.1", port, env)
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, process, SERVER_READY_TIMEOUT_S, what="the API server")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process_group(process, timeout_s=15)


# --- the fuzzer ------------------------------------------------------------------------------


def schemathesis_command(
    base_url: str, token: str, *, examples: int, seed: int, report_dir: Path, extra: list[str]
) -> list[str]:
    command = [
        SCHEMATHESIS, "--config-file", str(CONFIG_FILE), "run", f"{base_url}/api/schema/",
        "--checks", "all",
        "--header", f"Authorization: Token {token}",
        "--max-examples", str(examples),
        "--seed", str(seed),
        # One worker: the same seed then replays the same requests in the same order.
        "--workers", "1",
        "--request-timeout", "20",
        # Nothing carried over between runs: what a seed generates depends on the seed alone.
        "--generation-database", "none",
        # The API refuses NUL in every string (the schema's description says so; PostgreSQL
        # cannot store it), a rule OpenAPI has no keyword for.
        "--generation-allow-x00", "false",
        "--report", "junit",
        "--report-dir", str(report_dir),
        "--no-color",
    ]  # fmt: skip
    for path in EXCLUDED_PATHS:
        command += ["--exclude-path", path]
    return command + extra


def replay_hint(seed: int, examples: int, extra: list[str]) -> str:
    database = "DATABASE_URL=... " if os.environ.get("DATABASE_URL") else ""
    args = ["--seed", str(seed), "--examples", str(examples), *(["--", *extra] if extra else [])]
    return f"{database}.venv/bin/python contract/run.py {shlex.join(args)}"


def fuzz(
    base_url: str,
    seeded: Seeded,
    *,
    examples: int,
    seed: int,
    timeout_s: float,
    workdir: Path,
    extra: list[str],
) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "contract.hooks",
        "CONTRACT_CALL_ID": seeded.call_id,
        "CONTRACT_AGENT_SLUG": seeded.agent_slug,
        "CONTRACT_FROM_NUMBER": CONTRACT_FROM_NUMBER,
    }
    command = schemathesis_command(
        base_url, seeded.token, examples=examples, seed=seed, report_dir=workdir / "report",
        extra=extra,
    )  # fmt: skip
    shown = [part.replace(seeded.token, "<token>") for part in command]
    log(f"running: {shlex.join(shown)}")
    # In the run's folder: schemathesis keeps a cache (.schemathesis/) where it runs, and the
    # checkout is no place for it.
    process = subprocess.Popen(command, cwd=workdir, env=env, start_new_session=True)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log(f"FAILED: schemathesis did not finish within {timeout_s:.0f} s")
        return 124


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples", type=int, default=DEFAULT_EXAMPLES, help="test cases per operation"
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="wall-clock limit of the fuzzing"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run's folder (server log, report)"
    )
    parser.add_argument(
        "schemathesis_args", nargs="*", help="after --: passed to `schemathesis run` as they are"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    if not Path(SCHEMATHESIS).exists():
        raise SystemExit("schemathesis is not installed: pip install -e '.[contract]'")

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="api-contract-"))
    log(f"seed {seed}, {args.examples} examples per operation, folder {workdir}")
    status = 1
    try:
        status = prepare_and_fuzz(args, seed, workdir)
    except subprocess.CalledProcessError as failed:
        log(f"FAILED: {shlex.join(map(str, failed.cmd))} exited with {failed.returncode}")
        if failed.stderr:
            log(failed.stderr.strip())
    except Exception as failed:
        # No database server, a port that never opened...: one line, not a traceback.
        log(f"FAILED: {type(failed).__name__}: {failed}")
    finally:
        elapsed = time.monotonic() - started
        verdict = "passed" if status == 0 else f"FAILED (exit {status})"
        log(f"{verdict} in {elapsed:.0f} s; seed {seed}")
        if status != 0:
            log(f"replay: {replay_hint(seed, args.examples, args.schemathesis_args)}")
        if args.keep or status != 0:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


def prepare_and_fuzz(args: argparse.Namespace, seed: int, workdir: Path) -> int:
    """Database, migrations, seed, server, fuzzer; the fuzzer's exit status."""
    status = 1
    with throwaway_database(workdir, os.environ.get("DATABASE_URL")) as database_url:
        env = run_env(workdir, database_url)
        manage(env, "migrate", "--noinput", "-v0")
        seeded = seed_database(env)
        log(f"seeded call {seeded.call_id}, agent {seeded.agent_slug}")
        server_log = workdir / "server.log"
        try:
            with (
                twilio_rest_standin(env, workdir / "twilio-rest.log"),
                served(env, server_log) as base_url,
            ):
                status = fuzz(
                    base_url, seeded, examples=args.examples, seed=seed,
                    timeout_s=args.timeout, workdir=workdir, extra=args.schemathesis_args,
                )  # fmt: skip
        finally:
            if status != 0 and server_log.exists():
                tail = server_log.read_text(errors="replace").splitlines()[-40:]
                log("server log (last lines):\n" + "\n".join(tail))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
