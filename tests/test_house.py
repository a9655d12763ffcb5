"""The house rules: rooms import only what their row of the layout allows, no import circles,
no file past one purpose, contracts spelled once, deferred imports only in the CLI."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ROOMS = ("models", "flows", "deployments", "infra", "sandbox")
MAX_LINES = 500


def _sources(*rooms: str) -> Iterator[Path]:
    for room in rooms or ROOMS:
        yield from sorted((ROOT / room).rglob("*.py"))


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(node, imported module, whether it sits inside a function) for each import of a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> Iterator:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from visit(child, in_function, True)
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import) and not type_checking:
                for alias in child.names:
                    yield child, alias.name, in_function
            elif isinstance(child, ast.ImportFrom) and not type_checking:
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    base = f"{base}.{child.module}" if child.module else base
                for alias in child.names:
                    yield child, f"{base}.{alias.name}", in_function
                    yield child, base, in_function
            yield from visit(child, inside, type_checking)

    yield from visit(tree, False, False)


def _project_modules() -> dict[str, Path]:
    return {_module(path): path for path in _sources()}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    """Each module's imports of the project, as the text names them: `from pkg import sub` is an
    arrow to `pkg` (its `__init__` runs first) and to `pkg.sub` when that is a module."""
    modules = _project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, found, _ in _imports(path):
            target = _resolve(found, modules)
            if target and target != name:
                graph[name].add(target)
    return graph


def test_no_import_circle_between_files():
    graph = _graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                walk(target, [*trail, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert circles == []


# Which rooms each room may import (the layout table of ARCHITECTURE.md).
ALLOWED = {
    "models": {"models"},
    "flows": {"flows", "models"},
    "deployments": {"deployments", "flows", "models"},
    "infra": {"infra", "deployments", "flows", "models", "sandbox.ready"},
    "deployments.cli": {"deployments", "flows", "models", "infra", "sandbox"},
    "sandbox": {"sandbox", "flows.tournaments", "flows.errors"},
}


def _room(module: str) -> str:
    return "deployments.cli" if module.startswith("deployments.cli") else module.split(".")[0]


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_what_the_layout_allows(room):
    modules = _project_modules()
    graph = _graph()
    wrong = []
    for module, targets in graph.items():
        if _room(module) != room:
            continue
        for target in targets:
            if not any(target == ok or target.startswith(f"{ok}.") for ok in ALLOWED[room]):
                wrong.append(f"{modules[module].relative_to(ROOT)} imports {target}")
    assert wrong == []


def test_models_stay_pure():
    for path in _sources("models"):
        for _, imported, _ in _imports(path):
            assert imported.split(".")[0] not in {"prefect", "numerapi", "httpx", "requests"}, path


def test_no_source_file_is_past_one_purpose():
    long = {
        str(path.relative_to(ROOT)): n
        for path in _sources(*ROOMS, "benchmarks")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_deferred_imports_live_only_in_the_cli():
    """The CLI defers imports to keep `--help` fast; nowhere else needs to."""
    deferred = [
        f"{path.relative_to(ROOT)}:{node.lineno} {imported}"
        for path in _sources()
        if not _module(path).startswith(("deployments.cli", "sandbox.cli"))
        for node, imported, in_function in _imports(path)
        if in_function
    ]
    assert deferred == []


# What `--help` must not import: each takes from tens of milliseconds (httpx) to seconds.
HEAVY_FOR_HELP = (
    "prefect",
    "pandas",
    "numpy",
    "pyarrow",
    "lightgbm",
    "sklearn",
    "scipy",
    "numerapi",
    "httpx",
    "yfinance",
)


@pytest.mark.parametrize(
    "args", [["--help"], ["node", "--help"], ["node", "add", "--help"], ["sandbox", "--help"]]
)
def test_the_cli_help_imports_nothing_heavy(args):
    import subprocess
    import sys

    code = (
        "import contextlib, io, sys\n"
        f"sys.argv = ['numerai-nodes', *{args!r}]\n"
        "from deployments.cli import main\n"
        "code = 'no exit'\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        code = exc.code\n"
        f"print(code, sorted({set(HEAVY_FOR_HELP)!r} & {{m.split('.')[0] for m in sys.modules}}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "0 []", out.stderr


def _mixed_tuples(path: Path) -> Iterator[str]:
    root_names = {"NodeError"}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and isinstance(node.type, ast.Tuple):
            names = {ast.unparse(element).split(".")[-1] for element in node.type.elts}
            builtin = {
                name
                for name in names
                if name in dir(__builtins__) or hasattr(__import__("builtins"), name)
            }
            if names & root_names and builtin:
                yield f"{path.relative_to(ROOT)}:{node.lineno} except {ast.unparse(node.type)}"


def test_no_except_tuple_mixes_the_error_root_with_builtins():
    found = [hit for path in _sources("deployments", "infra") for hit in _mixed_tuples(path)]
    assert found == []


def test_every_expected_failure_derives_from_the_one_root():
    import importlib
    import inspect

    from flows.errors import NodeError

    strays = []
    for name in _project_modules():
        # models/ is pure (no project imports): flows turns its few exceptions into NodeErrors.
        if name.endswith("__main__") or name.startswith("models"):
            continue
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == name
                and not attribute.startswith("_")
                and not issubclass(value, NodeError)
            ):
                strays.append(f"{name}.{attribute}")
    assert strays == []


# Contracts spelled once: each literal lives in one module (tests aside).
CONTRACTS = {
    "tournament ids": (
        re.compile(r"\b(CLASSIC|SIGNALS|CRYPTO)\s*=\s*(8|11|12)\b"),
        "flows/tournaments.py",
    ),
    "event name": (re.compile(r"numerai\.webhook\.received"), "flows/events.py"),
    "sandbox ready file": (re.compile(r"sandbox\.json"), "sandbox/ready.py"),
    "resource prefix": (re.compile(r"[\"']numerai\.node\.[\"']"), "flows/events.py"),
}


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_a_contract_is_spelled_in_one_module(contract):
    pattern, home = CONTRACTS[contract]
    where = sorted(
        str(path.relative_to(ROOT))
        for path in _sources(*ROOMS, "benchmarks")
        if pattern.search(path.read_text())
    )
    assert where == [home]


def test_tournament_ids_are_never_literal_outside_their_module():
    """A bare `tournament == 8` or `tournament: 11` anywhere but flows/tournaments.py."""
    pattern = re.compile(
        r"tournament[\"']?\s*(==|!=|:|=)\s*(8|11|12)\b|\b(8|11|12)\s+(Classic|Signals|Crypto)\b"
    )
    where = sorted(
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _sources(*ROOMS, "benchmarks")
        if path.relative_to(ROOT).as_posix() != "flows/tournaments.py"
        for match in pattern.finditer(path.read_text())
    )
    assert where == []


def test_nothing_reads_a_project_setting_from_the_environment_behind_its_settings_class():
    """NUMERAI_* variables are read by the settings classes, which give them types and a default."""
    reads = re.compile(
        r"os\.(getenv|environ\.get)\(\s*[\"']NUMERAI|os\.environ\[\s*[\"']NUMERAI[^\]]*\]\s*(?!=)"
    )
    found = sorted(
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in _sources()
        for match in reads.finditer(path.read_text())
    )
    assert found == []
