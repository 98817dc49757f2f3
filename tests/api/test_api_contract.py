"""`make api-contract` fails when the schema and the server disagree (issue 26, "done when").

The driver (contract/run.py) is run as CI runs it, on one operation to stay short: once as the
project is (it passes), once with a schema that promises one interval the server does not take
(it must fail, naming the finding and the seed to replay it with). Needs the `contract` extra
(`make api-contract` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="the contract extra: `make api-contract` installs it")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "contract" / "run.py"
# Settings that break the contract on purpose: the schema lists an interval ("month") that the
# server refuses with a 400, the kind of drift the run exists to catch.
BROKEN_SETTINGS = textwrap.dedent(
    """
    from bridge_project.settings import *  # noqa: F403

    SPECTACULAR_SETTINGS = {
        **SPECTACULAR_SETTINGS,  # noqa: F405
        "POSTPROCESSING_HOOKS": [
            *SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"],  # noqa: F405
            "broken_contract_settings.promise_a_month",
        ],
    }


    def promise_a_month(result, **kwargs):
        for parameter in result["paths"]["/api/analytics"]["get"]["parameters"]:
            if parameter["name"] == "interval":
                parameter["schema"]["enum"].append("month")
        return result
    """
)


def run_driver(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        # The suite's own settings and database are not the run's.
        if key not in ("DJANGO_SETTINGS_MODULE", "DJANGO_ENV")
    }
    environment.update(env)
    return subprocess.run(
        [
            sys.executable, str(DRIVER), "--seed", "26", "--examples", "15", "--timeout", "240",
            "--", "--include-path", "/api/analytics",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
    )  # fmt: skip


def test_the_contract_run_passes_on_the_project_as_it_is(tmp_path: Path) -> None:
    result = run_driver(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "[api-contract] passed" in output
    assert "seed 26" in output


def test_the_contract_run_fails_when_the_schema_promises_what_the_server_refuses(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken_contract_settings.py").write_text(BROKEN_SETTINGS)
    result = run_driver(
        tmp_path,
        DJANGO_SETTINGS_MODULE="broken_contract_settings",
        PYTHONPATH=str(tmp_path),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    # schemathesis's finding: a schema-valid request (interval=month) refused with 400.
    assert "Schema-valid request rejected" in output, output[-4000:]
    assert "interval=month" in output
    replay = ".venv/bin/python contract/run.py --seed 26 --examples 15 -- --include-path"
    assert replay in output
    kept = re.search(r"\[api-contract\] kept (\S+)", output)
    assert kept is not None  # the server log and the report, for whoever reads the failure
    shutil.rmtree(kept.group(1), ignore_errors=True)
