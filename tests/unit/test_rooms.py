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
import re
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


# --------------------------------------------------------------------------- the house's promises (docs/contracts.md)

FIRMWARE = REPO / "firmware_py"
# The supervision station is not the door: it keeps its own archive SQL and is never imported by the service.
STATION = FIRMWARE / "station"
SQL_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|BEGIN|COMMIT|ROLLBACK|"
                           r"SAVEPOINT|RELEASE|PRAGMA|VACUUM|ATTACH|WITH)\b")


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(room) -> list:
    return sorted(p for p in room.rglob("*.py") if "__pycache__" not in p.parts)


def door_files() -> list:
    """Every module of the door's program: firmware_py without the supervision station."""
    return [p for p in python_files(FIRMWARE) if STATION not in p.parents]


def sql_in(source: str) -> list[str]:
    """The SQL statements written in ``source`` (string literals and f-string parts) and its sqlite3.connect calls."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_STATEMENT.match(node.value):
            found.append(node.value.strip().split("\n")[0][:60])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "sqlite3"):
            found.append("sqlite3.connect(…)")
    return found


def test_the_sql_finder_sees_statements_f_strings_and_connections():
    source = ('conn = sqlite3.connect(path)\n'
              'conn.execute("SELECT 1 FROM events")\n'
              'conn.execute(f"PRAGMA busy_timeout = {ms}")\n'
              'print("select a seat; update me")\n')
    assert sql_in(source) == ["sqlite3.connect(…)", "SELECT 1 FROM events", "PRAGMA busy_timeout ="]


@pytest.mark.parametrize("path", [p for p in door_files() if (FIRMWARE / "storage") not in p.parents],
                         ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_the_doors_sql_is_written_only_in_storage(path):
    assert sql_in(path.read_text(encoding="utf-8")) == [], f"{path.name}: SQL outside firmware_py/storage/"


@pytest.mark.parametrize("path", [p for p in python_files(FIRMWARE) if (FIRMWARE / "service") not in p.parents],
                         ids=lambda p: str(p.relative_to(FIRMWARE)))
def test_only_the_service_imports_the_drivers(path):
    reached = {n for n in project_imports(path) if n.split(".")[0] == "drivers"}
    assert reached == set(), f"{path.name} imports drivers/ (only firmware_py/service/ may)"


def test_the_command_line_and_the_simulator_do_not_import_each_other():
    sim_to_cli = {(p.name, n) for p in python_files(REPO / "simulator") for n in project_imports(p)
                  if n.startswith("firmware_py.cli")}
    cli_to_sim = {(p.name, n) for p in python_files(FIRMWARE / "cli") for n in project_imports(p)
                  if n.split(".")[0] == "simulator"}
    assert sim_to_cli == set(), "the simulator reaches into the door's command line"
    assert cli_to_sim == set(), "the door's command line reaches into the simulator"


def imported_modules(path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, at module level and lazily inside functions, relative imports
    resolved; ``from package import name`` counts as the module ``package.name`` when that is a module."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {n for n in found if n in known and n != here}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def firmware_import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in python_files(FIRMWARE)}
    return {m: imported_modules(p, set(modules)) for m, p in modules.items()}


def test_the_cycle_finder_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_the_import_graph_sees_lazy_imports_and_modules_named_in_from_imports():
    graph = firmware_import_graph()
    assert "firmware_py.cli.run" in graph["firmware_py.cli.main"]  # imported inside build_parser
    assert "firmware_py.core.idnumber" in graph["firmware_py.core.events"]


def test_no_module_of_the_firmware_imports_itself_back_through_others():
    assert import_cycles(firmware_import_graph()) == []


# --------------------------------------------------------------------------- unit tests start no process

UNIT = REPO / "tests" / "unit"
FIXTURES = REPO / "tests" / "fixtures"
PROCESS_MODULES = ("subprocess", "multiprocessing", "concurrent.futures.process")
PROCESS_CALLS = ("fork", "forkpty", "Popen", "system", "popen", "posix_spawn", "posix_spawnp", "spawnl", "spawnle",
                 "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "execv", "execve", "execl",
                 "execlp", "execvp", "execvpe", "create_subprocess_exec", "create_subprocess_shell",
                 "ProcessPoolExecutor")


def process_starts(source: str) -> list[str]:
    """What in ``source`` can start a process: a process module imported, or a call that forks or executes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(PROCESS_MODULES)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(PROCESS_MODULES):
                found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names if a.name in PROCESS_CALLS]
        elif isinstance(node, ast.Attribute) and node.attr in PROCESS_CALLS:
            found.append(node.attr)
    return found


def starts_processes(path) -> bool:
    """Whether the module at ``path``, or a project module it imports, can start a process."""
    if process_starts(path.read_text(encoding="utf-8")):
        return True
    for name in project_imports(path) | {n for n in _plain_imports(path) if n.startswith("tests.")}:
        parts = name.split(".")
        for cut in (len(parts), len(parts) - 1):
            candidate = REPO.joinpath(*parts[:cut]).with_suffix(".py")
            if candidate.is_file() and candidate != path and process_starts(candidate.read_text(encoding="utf-8")):
                return True
    return False


def _plain_imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def fixtures_that_start_processes() -> set[str]:
    """Names of the shared fixtures (tests/fixtures) that start a process, themselves or through another fixture."""
    defined: dict[str, set[str]] = {}
    starting: set[str] = set()
    for path in python_files(FIXTURES):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_starts = starts_processes(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
                defined[node.name] = {a.arg for a in node.args.args}
                if module_starts:
                    starting.add(node.name)
    grew = True
    while grew:
        grew = False
        for name, needs in defined.items():
            if name not in starting and needs & starting:
                starting.add(name)
                grew = True
    return starting


def test_the_fixtures_that_start_servers_are_known_to_start_processes():
    assert {"pcscd", "mosquitto_broker", "postgres_cluster"} <= fixtures_that_start_processes()


def test_the_process_finder_sees_imports_and_calls():
    assert process_starts("import subprocess\n") == ["subprocess"]
    assert process_starts("import os\nos.fork()\n") == ["fork"]
    assert process_starts("from os import posix_spawn\n") == ["os.posix_spawn"]
    assert process_starts("import os\nos.path.join('a')\n") == []


@pytest.mark.parametrize("path", python_files(UNIT), ids=lambda p: p.name)
def test_a_unit_test_file_starts_no_process(path):
    source = path.read_text(encoding="utf-8")
    assert process_starts(source) == [], f"{path.name} can start a process: it belongs in tests/system/"
    starting = fixtures_that_start_processes()
    used = {a.arg for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef) for a in node.args.args}
    assert used & starting == set(), f"{path.name} uses fixtures that start processes"


# --------------------------------------------------------------------------- the benchmarks stand on their own

BENCH = REPO / "bench"


def test_the_test_import_finder_sees_both_forms():
    source = "import tests.fixtures.a\nfrom tests.fixtures.b import c\nfrom testsuite import d\n"
    assert suite_imports(source) == {"tests.fixtures.a", "tests.fixtures.b"}


def suite_imports(source: str) -> set[str]:
    """The modules of the test suite that ``source`` imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {n for n in found if n == "tests" or n.startswith("tests.")}


@pytest.mark.parametrize("path", python_files(BENCH), ids=lambda p: p.name)
def test_a_benchmark_imports_nothing_from_the_test_suite(path):
    assert suite_imports(path.read_text(encoding="utf-8")) == set()


# ---------------------------------------------------------------- the station's rooms
# What each room of the station may import of the others: the archive only stores, the ingest and
# the web side use it, and neither uses the other; the web side publishes the roster through its room.
STATION_ROOMS = {"web": {"accounts", "archive", "roster"}, "ingest": {"archive"}, "accounts": {"archive"},
                 "archive": set(), "roster": {"archive"}}

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
