"""The import graph of src/minijet, read with `ast` (imports inside functions included):

- the daemon and client packages (jobserver, taskserver, taskhost, dfs, client) do not import
  one another; what several of them share lives in neutral modules (jobdir, splits, ids,
  states, taskdesc, formats/...). The one exception is the DFS's client library: any of
  them may use `minijet.dfs` (DfsClient), the package itself and nothing under it;
- modules outside those packages (builder, streaming, localrunner, testing, ...) never
  import the jobserver, the taskservers or the client, and reach the TaskHost only through
  `minijet.taskhost` itself (its public names);
- no module is imported in a cycle.

Imports under `if TYPE_CHECKING:` never run and are left out. Importing `a.b.c` also runs
the packages `a` and `a.b`; those implicit edges are left out too (a package's __init__
would otherwise be in a cycle with every module under it that it names).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import minijet

ROOT = Path(minijet.__file__).parent
PACKAGES = ("jobserver", "taskserver", "taskhost", "dfs", "client")
SHARED = {"dfs": "minijet.dfs"}   # package -> what other packages may import of it


def module_name(path: Path) -> str:
    parts = ("minijet",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module of ours `name` is (or is in: `a.b.C` -> `a.b`), if any."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        targets = graph.setdefault(name, set())
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [_resolve(a.name, modules) for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                found = [_resolve(f"{base}.{a.name}", modules) for a in node.names]
            targets.update(t for t in found if t and t != name)
    return graph


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else None


def violations(edges) -> list[str]:
    """The edges (importer, imported) that break the package rules."""
    bad = []
    for src, dst in sorted(edges):
        here, there = _package(src), _package(dst)
        if there is None or here == there:
            continue
        if here is not None:
            if SHARED.get(there) != dst:
                bad.append(f"{src} imports {dst}: package {here} reaches into {there}")
        elif there in ("jobserver", "taskserver", "client"):
            bad.append(f"{src} imports {dst}: a shared module depends on the {there}")
        elif there == "taskhost" and dst != "minijet.taskhost":
            bad.append(f"{src} imports {dst}: use minijet.taskhost's public names")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "minijet.jobserver.model" in graph["minijet.jobserver.jobserver"]
    assert "minijet.client.localrun" in graph["minijet.client.jetshell"]   # in a function
    assert "minijet.taskserver.taskserver" not in graph["minijet.taskserver.service"]


def test_packages_do_not_reach_into_each_other():
    graph = import_graph()
    assert violations((src, dst) for src, targets in graph.items() for dst in targets) == []


def test_no_module_is_imported_in_a_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("edge", [   # imports this rule was written against
    ("minijet.client.jetclient", "minijet.jobserver.jobfiles"),
    ("minijet.localrunner", "minijet.jobserver.model"),
    ("minijet.testing", "minijet.jobserver.splits"),
    ("minijet.taskhost.__main__", "minijet.taskserver.shuffle"),
    ("minijet.taskserver.shuffle", "minijet.taskhost.segments"),
    ("minijet.builder", "minijet.taskhost.operations"),
    ("minijet.streaming", "minijet.taskhost.runner"),
    ("minijet.localrunner", "minijet.client.jetshell"),
    ("minijet.jobserver.jobserver", "minijet.dfs.client"),
])
def test_a_reach_into_another_package_is_caught(edge):
    assert violations([edge])


def test_a_cycle_is_caught():
    graph = {"minijet.client.jetshell": {"minijet.client.streaming_cli"},
             "minijet.client.streaming_cli": {"minijet.streaming"},
             "minijet.streaming": {"minijet.localrunner"},
             "minijet.localrunner": {"minijet.client.jetshell"}}
    assert cycles(graph) == [sorted(graph)]
