"""The rooms keep their walls: the pure rules and the command line import without Faust."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

RULES = sorted(
    f"leadedge.rules.{path.stem}"
    for path in (Path(__file__).resolve().parents[2] / "leadedge" / "rules").glob("*.py")
    if path.stem != "__init__"
)
# What the rules may never pull in: the framework, and the clients of the outside world.
FORBIDDEN = ("faust", "mode", "elasticsearch", "boto3", "leadedge.engine.app")


def _imported(modules: list[str]) -> set[str]:
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("module", RULES)
def test_a_rule_module_imports_without_faust_or_any_client(module: str) -> None:
    imported = _imported([module])
    assert not {name for name in imported if name.split(".")[0] in FORBIDDEN} - {module}
    assert "leadedge.engine.app" not in imported


def test_the_package_and_its_command_line_import_without_building_the_app() -> None:
    # `faust -A leadedge worker` gets the app from `leadedge.app`, built on first access.
    imported = _imported(["leadedge", "leadedge.tools.cli", "leadedge.gate.auth"])
    assert "faust" not in imported
    assert "leadedge.engine.app" not in imported


REPO = Path(__file__).resolve().parents[2]
FOUNDATION = {"config", "exceptions", "metrics", "health"}
# Which rooms each room may import at module level (docs/architecture.md).
ALLOWED = {
    "rules": {"config", "exceptions"},
    "clients": FOUNDATION,
    "sinks": FOUNDATION | {"clients"},
    "engine": FOUNDATION | {"rules", "clients", "sinks", "gate"},
    "gate": FOUNDATION | {"rules"},
    "web": FOUNDATION | {"rules", "clients", "engine", "tables", "gate"},
    "tools": FOUNDATION | {"rules", "clients", "sinks", "stack", "gate"},
    "stack": {"exceptions"},
}


def _module_level_rooms(path: Path) -> set[str]:
    """The rooms of leadedge a module imports at its top level (not inside functions)."""
    rooms: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "leadedge":
                continue
            if len(parts) > 1:
                rooms.add(parts[1])
            else:
                rooms.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "leadedge" and len(parts) > 1:
                    rooms.add(parts[1])
    return rooms


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_a_room_imports_only_the_rooms_the_architecture_allows(room: str) -> None:
    for path in sorted((REPO / "leadedge" / room).glob("*.py")):
        imported = _module_level_rooms(path) - {room}
        assert imported <= ALLOWED[room], f"{path.name} imports {sorted(imported - ALLOWED[room])}"
