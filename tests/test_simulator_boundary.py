"""The product never imports the simulator (ARCHITECTURE.md, Layout): the stand-ins, the
simulated caller and the load generator are development and test tools. Only `make run`'s
development launcher names a simulator module, to start it as a subprocess, and the settings
list the app for its management commands."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("bridge_project", "calls", "agents", "telephony", "realtime", "audio")
SIMULATOR_NAME = re.compile(r"^simulator(\.|$)")
# Where a string naming the simulator is not an import: the launcher's `python -m ...` command
# (a subprocess) and INSTALLED_APPS (the app's management commands).
STRINGS_ALLOWED = {Path("bridge_project/serve.py"), Path("bridge_project/settings.py")}


def simulator_references(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Each import of the simulator in `path`, and each string naming a simulator module."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    relative = path.relative_to(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if relative in STRINGS_ALLOWED:
                continue
            names = [node.value]
        else:
            continue
        for name in names:
            if SIMULATOR_NAME.match(name):
                yield f"{relative}:{node.lineno}: {name}"


def test_the_scan_sees_every_way_of_importing_the_simulator(tmp_path: Path) -> None:
    (tmp_path / "calls").mkdir()
    module = tmp_path / "calls" / "leak.py"
    module.write_text(
        "import simulator.load\nfrom simulator.twilio import caller\n"
        "from .simulator import nothing\nimport simulation\n"
        "import importlib\nimportlib.import_module('simulator.openai.standin')\n"
    )
    found = list(simulator_references(module, tmp_path))
    assert [line.split(": ")[1] for line in found] == [
        "simulator.load",
        "simulator.twilio",
        "simulator.openai.standin",
    ]


@pytest.mark.parametrize("package", PRODUCT_PACKAGES)
def test_the_product_does_not_import_the_simulator(package: str) -> None:
    leaks = [
        reference
        for path in sorted((ROOT / package).rglob("*.py"))
        for reference in simulator_references(path)
    ]
    assert not leaks, "the product imports the simulator:\n" + "\n".join(leaks)


def test_only_the_development_launcher_starts_the_simulator() -> None:
    launcher = (ROOT / "bridge_project" / "serve.py").read_text("utf-8")
    assert '"simulator.openai.standin"' in launcher
    assert '"simulator.twilio.rest"' in launcher
