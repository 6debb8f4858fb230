"""The layout is the map (issue 15): the project's import graph — module-level and function-level imports alike —
has no cycles, no project module is loaded through ``importlib`` except by the three registries that load by name,
the connectors import nothing from the hub, and the domain never imports the staff UI or the API."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("integration_hub", "connectors", "exceptions_app")
EDGES = ("integration_hub.console", "integration_hub.api")  # staff screens and the REST API
UI = (*EDGES, "integration_hub.urls", "exceptions_app.views", "exceptions_app.urls")
BY_NAME = {"integration_hub.core.beat", "connectors.registry", "connectors.sandbox"}  # load modules by name


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            if "migrations" in p.parts:
                continue
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = p
    return mods


def _graph():
    mods = _modules()

    def resolve(name: str):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph, by_name = {m: set() for m in mods}, set()
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
                by_name.add(m)
            for n in names:
                t = resolve(n)
                if t and t != m:
                    graph[m].add(t)
    return graph, by_name


def _cycles(graph) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_even_through_function_level_imports():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_importlib_only_in_the_registries_that_load_by_name():
    _, by_name = _graph()
    assert by_name <= BY_NAME, sorted(by_name - BY_NAME)


def test_connectors_import_nothing_from_the_hub():
    graph, _ = _graph()
    bad = [
        (m, t)
        for m, ts in graph.items()
        if m.startswith("connectors") and not m.startswith("connectors.sandbox")
        for t in ts
        if t.startswith(("integration_hub", "exceptions_app"))
    ]
    assert bad == []


def test_the_domain_never_imports_the_staff_ui_or_the_api():
    graph, _ = _graph()
    bad = [(m, t) for m, ts in graph.items() if not m.startswith(UI) for t in ts if t.startswith(EDGES)]
    assert bad == []


def test_the_checks_can_fail():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
