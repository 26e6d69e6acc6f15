"""How the code is put together: imports point one way, and importing does nothing.

The graph is read from the source with `ast` (no import runs); the import-time checks run in
a fresh interpreter, so nothing this test process has loaded hides a side effect.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

from bot.context import BotState, Services, Status
from tests.conftest import REPO

PACKAGES = ("bot", "storage")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, ast.Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


MODULES = project_modules()


def _targets(node: ast.Import | ast.ImportFrom, modules: dict[str, ast.Module]) -> set[str]:
    """The project modules an import statement loads."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        assert node.level == 0, "relative imports are not used"
        base = node.module or ""
        # `from storage import articles` loads storage.articles; `from storage.db import X`
        # loads storage.db.
        candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
    for name in candidates:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            names.add(name)
    return names


def import_graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    """Module → the project modules it imports at module level (package __init__ aside)."""
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, modules)
        graph[name] = {m for m in edges - {name} if m not in PACKAGES and m != "bot.pipeline"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph(MODULES)
    assert len(graph) > 40
    assert "storage.db" in graph["storage.articles"]
    assert "storage.articles" in graph["storage.outbox"]  # `from storage.articles import …`
    assert {"bot.config", "bot.pipeline.match", "storage.db"} <= graph["bot.context"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_have_no_cycle() -> None:
    assert find_cycle(import_graph(MODULES)) is None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with bot's sub-packages (bot.pipeline, bot.stages, bot.commands) each
    drawn as one node."""

    def node(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "bot" and len(parts) > 2 else module

    packages: dict[str, set[str]] = {}
    for module, edges in graph.items():
        packages.setdefault(node(module), set()).update(node(e) for e in edges)
    return {name: edges - {name} for name, edges in packages.items()}


def test_packages_have_no_cycle() -> None:
    """bot.pipeline (parts that know nothing of the running bot) ← bot.context (the running
    bot's Services, built from them) ← bot.stages (the stages as the bot runs them)."""
    packages = package_graph(import_graph(MODULES))
    assert "bot.context" in packages["bot.stages"] and "bot.pipeline" in packages["bot.context"]
    assert find_cycle(packages) is None
    assert not {"bot.context", "bot.stages"} & packages["bot.pipeline"]
    assert find_cycle(package_graph({"bot.a.x": {"bot.b.y"}, "bot.b.y": {"bot.c"}, "bot.c": {"bot.a.z"}})) == [
        "bot.a", "bot.b", "bot.c", "bot.a",
    ]


def test_storage_imports_nothing_of_bot() -> None:
    graph = import_graph(MODULES)
    assert {m: sorted(e) for m, e in graph.items() if m.startswith("storage") and any(
        t.startswith("bot") for t in e)} == {}  # fmt: skip


def test_no_project_import_inside_a_function() -> None:
    """Imports of the project's modules sit at the top of a module, where the graph sees
    them; one inside a function hides a dependency (usually a cycle)."""
    found = []
    for name, tree in MODULES.items():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom) and _targets(node, MODULES):
                    found.append(f"{name}:{node.lineno} in {function.name}()")
    assert found == []


def _run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), **env},
    )


def test_storage_loads_neither_bot_telegram_nor_feedparser(tmp_path: Path) -> None:
    names = sorted(m for m in MODULES if m.startswith("storage"))
    code = (
        f"import sys, json\nfor name in {names!r}:\n    __import__(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('bot', 'telegram', 'feedparser', 'httpx', 'aiohttp'))))"
    )
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


# Imports every project module with the environment and the network watched: reads of
# os.environ from project code, sockets connected, SQLite files opened.
_WATCH = """
import json, os, socket, sqlite3, sys

reads, connects, opened = [], [], []

def project_caller():
    # The first frame outside os and the mapping machinery: whoever asked.
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in ("os", "_collections_abc", "collections.abc", "__main__"):
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return name if name.split(".")[0] in ("bot", "storage") else None

class Watched(type(os.environ)):
    def __getitem__(self, key):
        if (caller := project_caller()):
            reads.append(f"{caller}: {key}")
        return super().__getitem__(key)

    def __iter__(self):
        if (caller := project_caller()):
            reads.append(f"{caller}: *")
        return super().__iter__()

os.environ.__class__ = Watched
real_connect = socket.socket.connect
def connect(self, address):
    connects.append(repr(address))
    return real_connect(self, address)
socket.socket.connect = connect
real_sqlite = sqlite3.connect
def sqlite_connect(*args, **kwargs):
    opened.append(repr(args[:1]))
    return real_sqlite(*args, **kwargs)
sqlite3.connect = sqlite_connect

for name in NAMES:
    __import__(name)
print(json.dumps({"reads": reads, "connects": connects, "opened": opened,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("bot", "storage"))}))
"""


def test_importing_bot_does_nothing(tmp_path: Path) -> None:
    """No setting read, no file written, no connection opened at import time: every module
    of bot/ and storage/, with a garbage token and a database path that would be created."""
    names = sorted(MODULES)
    done = _run(
        _WATCH.replace("NAMES", repr(names)), tmp_path, NEWSBOT_TOKEN="garbage",
        NEWSBOT_DB=str(tmp_path / "x" / "n.db"), NEWSBOT_FEEDS=str(tmp_path / "missing.toml"),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(names) <= set(report["loaded"])
    assert (report["reads"], report["connects"], report["opened"]) == ([], [], [])
    assert list(tmp_path.iterdir()) == []
    assert done.stderr == ""


def test_the_watch_sees_a_read_at_import_time(tmp_path: Path) -> None:
    """The check above would notice a module reading settings when imported, however it
    reads them."""
    probe = (
        "import types\nm = types.ModuleType('bot.probe')\n"
        "exec(\"import os\\nos.environ['A']\\nos.environ.get('B')\\nos.getenv('C')\\n"
        "'D' in os.environ\\ndict(os.environ)\", m.__dict__)\n"
    )
    done = _run(_WATCH.replace("NAMES", "[]").replace("for name in []:", probe + "for name in []:"), tmp_path, A="1")
    assert done.returncode == 0, done.stderr
    reads = json.loads(done.stdout)["reads"]
    assert reads[:4] == ["bot.probe: A", "bot.probe: B", "bot.probe: C", "bot.probe: D"]
    assert "bot.probe: *" in reads


# --- the shared context is typed all the way -------------------------------------------------


def _mentions_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    return any(_mentions_any(arg) for arg in typing.get_args(hint))


def _hints(cls: type) -> dict[str, object]:
    """Every annotation of the class: its fields and its methods' and properties'."""
    module = vars(sys.modules[cls.__module__])
    hints: dict[str, object] = {
        f"{cls.__name__}.{k}": v for k, v in typing.get_type_hints(cls, module).items()
    }
    for name, member in vars(cls).items():
        functions = [member.fget, member.fset] if isinstance(member, property) else [member]
        for function in functions:
            if isinstance(function, types.FunctionType):
                for arg, hint in typing.get_type_hints(function, module).items():
                    hints[f"{cls.__name__}.{name}:{arg}"] = hint
    return hints


@pytest.mark.parametrize("cls", [Services, Status, BotState])
def test_the_context_has_no_any(cls: type) -> None:
    hints = _hints(cls)
    assert hints, cls
    assert [name for name, hint in hints.items() if _mentions_any(hint)] == []


def test_the_any_check_sees_any() -> None:
    assert _mentions_any(dict[str, typing.Any]) and _mentions_any(typing.Any | None)
    assert not _mentions_any(dict[str, int])


# --- what 0.2 removed stays removed -------------------------------------------------------------

GONE = {
    "storage.models": ("Alert", "OutboxItem"),
    "storage.outbox": ("claim", "mark_sent", "delivery_counts", "queued_for_chat"),
    "storage.due": ("is_alert",),
    "storage.chats": ("active_chat_ids",),
    "bot.callbacks": ("unpack_int",),
    "bot.stages.deliver": ("last_loop_at",),
    "bot.stages.poll": ("FUTURE_SKEW",),
}


def _defined(tree: ast.Module) -> set[str]:
    """Names a module defines: functions, classes, module variables, and attributes it
    assigns (`self.x = …`) or declares in a class body."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def test_dead_code_is_gone() -> None:
    assert {"Article", "Chat"} <= _defined(MODULES["storage.models"])  # the check sees names
    assert "planner" in _defined(MODULES["bot.stages.deliver"])  # and self.x attributes
    left = {module: sorted(set(names) & _defined(MODULES[module])) for module, names in GONE.items()}
    assert {m: n for m, n in left.items() if n} == {}
    # Nobody uses them either (a call to a removed name would fail only when it runs).
    used = [
        f"{name}:{node.lineno}"
        for name, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in {n for ns in GONE.values() for n in ns}
    ]
    assert used == []
    sql = "\n".join(ast.unparse(tree) for tree in MODULES.values())
    assert "FROM meta" not in sql and "INTO meta" not in sql
