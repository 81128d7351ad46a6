"""What installing leadedge puts on the import path: `leadedge` alone.

The top-level `agents/` and `tables/` folders install as `leadedge.agents` and
`leadedge.tables`, so an environment that also has PyTables (`tables`) or another
`agents` keeps importing theirs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, object]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"])


def test_every_package_is_installed_under_the_leadedge_name() -> None:
    setuptools = _setuptools()
    listed = set(setuptools["packages"])  # type: ignore[call-overload]
    under_leadedge = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "leadedge").rglob("__init__.py")
    }
    # A new subpackage of leadedge/ must be listed, or its wheel would lack it.
    assert listed == under_leadedge | {"leadedge.agents", "leadedge.tables"}
    assert setuptools["package-dir"] == {
        "leadedge.agents": "agents",
        "leadedge.tables": "tables",
    }


def test_the_installed_package_brings_no_top_level_agents_or_tables() -> None:
    # From a directory outside the checkout: only what the installation provides.
    names = ("leadedge.agents", "leadedge.tables", "agents", "tables")
    probe = (
        "import importlib.util as u, json;"
        "spec = lambda name: (s := u.find_spec(name)) and s.origin;"
        f"print(json.dumps([spec(n) for n in {names!r}]))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd="/", capture_output=True, text=True, check=True
    )
    agents, tables, top_agents, top_tables = json.loads(found.stdout)
    assert agents == str(REPO / "agents" / "__init__.py")
    assert tables == str(REPO / "tables" / "__init__.py")
    # Another distribution's may be there; ours never is.
    for origin in (top_agents, top_tables):
        assert origin is None or not origin.startswith(str(REPO))
