"""The rooms hold: the door's core needs no hardware, database or broker library, and the CLI stays light.

Checked in this process: an import hook refuses the outside libraries while
every core module is imported afresh (``sys.modules`` is restored after), and
the source of each core module is read with ``ast`` for what it imports.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import pkgutil
import sys
from contextlib import contextmanager

import pytest

import firmware_py.core
from tests.fixtures.constants import EXAMPLE, REPO

CORE = REPO / "firmware_py" / "core"
BLOCKED = ("gpiozero", "serial", "smartcard", "sqlite3", "_sqlite3", "sqlite_utils", "paho")
# What the core may import from this project: itself, the config schema, the error types, the version.
ALLOWED = ("firmware_py.core", "firmware_py.config.schema", "firmware_py.errors")
CORE_MODULES = sorted(f"firmware_py.core.{m.name}" for m in pkgutil.iter_modules(firmware_py.core.__path__))


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.refused: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            self.refused.append(fullname)
            raise ImportError(f"{fullname} is blocked: the door's core must not need it")
        return None


@contextmanager
def fresh_imports(blocked: tuple[str, ...] = (), forget: tuple[str, ...] = ("firmware_py",)):
    """Import afresh with ``blocked`` top-level packages refused; sys.modules is as it was afterwards."""
    saved = dict(sys.modules)
    hook = _Refuse(blocked)
    for name in list(sys.modules):
        if name.split(".")[0] in blocked + forget:
            del sys.modules[name]
    sys.meta_path.insert(0, hook)
    try:
        yield hook
    finally:
        sys.meta_path.remove(hook)
        sys.modules.clear()
        sys.modules.update(saved)


def project_imports(path) -> set[str]:
    """The firmware_py/drivers/simulator modules a file imports, at any depth (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in found if n.split(".")[0] in ("firmware_py", "drivers", "simulator")}


def test_the_core_has_the_modules_this_test_expects():
    assert {"firmware_py.core.controller", "firmware_py.core.ports", "firmware_py.core.commands"} <= set(CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_every_core_module_imports_with_hardware_database_and_broker_libraries_blocked(module):
    with fresh_imports(BLOCKED) as hook:
        importlib.import_module(module)
        loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    assert loaded == [] and hook.refused == []


def test_the_blocking_hook_does_refuse_a_blocked_library():
    with fresh_imports(BLOCKED) as hook, pytest.raises(ImportError, match="blocked"):
        importlib.import_module("sqlite3")
    assert hook.refused == ["sqlite3"]
    assert "sqlite3" in sys.modules  # restored for the rest of the suite


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_a_core_module_imports_nothing_outside_the_core_the_schema_and_the_errors(path):
    outside = {n for n in project_imports(path)
               if n != "firmware_py.__version__" and not n.startswith(ALLOWED)}
    assert outside == set(), f"{path.name} reaches outside its room"


def test_the_core_has_no_import_cycle_between_commands_and_the_controller():
    assert not any(n.startswith("firmware_py.core.controller") for n in project_imports(CORE / "commands.py"))


def test_roster_list_loads_neither_the_station_nor_paho(tmp_path, capsys):
    config = tmp_path / "venue.toml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8").replace("/var/lib/accessctl/device.key",
                                                                  str(tmp_path / "device.key")), encoding="utf-8")
    with fresh_imports(forget=("firmware_py", "paho")):
        main = importlib.import_module("firmware_py.cli.main")
        args = main.build_parser().parse_args(["roster", "list", "--config", str(config),
                                               "--db", str(tmp_path / "door.db")])
        assert main.main(["roster", "list", "--config", str(config), "--db", str(tmp_path / "door.db")]) == 0
        loaded = sorted(m for m in sys.modules if m.startswith(("firmware_py.station", "paho")))
    assert args.command == "roster"
    assert "0 persons" in capsys.readouterr().out
    assert loaded == []


# ---------------------------------------------------------------- the station's rooms
STATION = REPO / "firmware_py" / "station"
# What each room of the station may import of the others: the archive only stores, the ingest and
# the web side use it, and neither uses the other.
STATION_ROOMS = {"web": {"accounts", "archive"}, "ingest": {"archive"}, "accounts": {"archive"}, "archive": set(),
                 "roster": {"archive"}}

def station_room(path) -> str | None:
    rel = path.relative_to(STATION).parts
    return rel[0] if len(rel) > 1 else None


@pytest.mark.parametrize("path", sorted(p for p in STATION.rglob("*.py") if station_room(p)),
                         ids=lambda p: str(p.relative_to(STATION)))
def test_a_station_room_imports_only_the_rooms_it_stands_on(path):
    room = station_room(path)
    reached = {n.split(".")[2] for n in project_imports(path) if n.startswith("firmware_py.station.")}
    forbidden = {r for r in reached if r in STATION_ROOMS and r != room and r not in STATION_ROOMS[room]}
    assert forbidden == set(), f"{path.relative_to(STATION)} reaches into {sorted(forbidden)}"
