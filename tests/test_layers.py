"""No circle of imports among canvas_tui's modules, function-level imports included.

The layer contracts ([tool.importlinter] in pyproject.toml, `lint-imports` in scripts/test) say
which way packages may import; this says that no set of modules imports itself round, inside a
layer too. It reads the same graph import-linter does: grimp parses every module's whole syntax
tree, so an import inside a function (or under TYPE_CHECKING) counts as much as one at the top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("canvas_tui", cache_dir=None)


def _imports(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def strongly_connected(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit): every component, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components, key=len, reverse=True)


def test_strongly_connected_finds_circles_and_only_circles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(edges) == [["a", "b", "c"], ["d"], ["e"]]


def test_function_level_imports_are_in_the_graph(graph: grimp.ImportGraph) -> None:
    # cli.main imports logging setup inside the function, only when -v or --log-file asks
    details = graph.get_import_details(importer="canvas_tui.cli", imported="canvas_tui.logs")
    assert details and all(d["line_contents"].startswith("from ") for d in details)
    assert graph.direct_import_exists(importer="canvas_tui.logs", imported="canvas_tui.config")


def test_no_circle_of_imports(graph: grimp.ImportGraph) -> None:
    edges = _imports(graph)
    circles = [c for c in strongly_connected(edges) if len(c) > 1]
    circles += [[m] for m, targets in edges.items() if m in targets]
    lines = []
    for circle in circles:
        for importer in circle:
            for imported in sorted(edges[importer] & set(circle)):
                where = graph.get_import_details(importer=importer, imported=imported)
                numbers = ", ".join(f"l.{d['line_number']}" for d in where)
                lines.append(f"{importer} -> {imported} ({numbers})")
    assert not circles, "import circles:\n" + "\n".join(lines)
