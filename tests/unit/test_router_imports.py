"""The router's modules import one way: each knows the ones below it, and those above only
through the narrow protocols the lower ones declare (exchange's ClientSide and UpstreamSide,
forwarding's ProxySide, follow's Peers). Type-checking imports count: a cycle of types is
a cycle of knowledge all the same."""

from __future__ import annotations

import grimp
import pytest

# highest first; each may import only modules after it in this list
DATA_PATH = ["main", "workers", "follow", "admin", "proxy", "client", "forwarding", "upstream",
             "accesslog", "exchange"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("kade", cache_dir=None)


def router_imports(graph: grimp.ImportGraph, module: str) -> set[str]:
    found = graph.find_modules_directly_imported_by(f"kade.router.{module}")
    return {m.removeprefix("kade.router.") for m in found if m.startswith("kade.router.")}


def cycles(graph: grimp.ImportGraph) -> list[set[str]]:
    """The groups of router modules that import each other, directly or not."""
    mods = {m.removeprefix("kade.router.") for m in graph.modules
            if m.startswith("kade.router.")}
    reach = {m: router_imports(graph, m) & mods for m in mods}
    changed = True
    while changed:  # transitive closure; a few dozen modules
        changed = False
        for m in mods:
            more = set().union(*(reach[n] for n in reach[m])) - reach[m]
            if more:
                reach[m] |= more
                changed = True
    groups = {frozenset({m} | {n for n in reach[m] if m in reach[n]})
              for m in mods if m in reach[m]}
    return [set(g) for g in groups]


def test_no_module_of_the_router_imports_itself_back(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


@pytest.mark.parametrize("module", DATA_PATH)
def test_a_module_imports_only_those_below_it(graph: grimp.ImportGraph, module: str) -> None:
    above = set(DATA_PATH[:DATA_PATH.index(module) + 1])
    assert router_imports(graph, module) & above == set()
