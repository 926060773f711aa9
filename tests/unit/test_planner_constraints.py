"""Marathon's constraint operators on `hostname` and any node attribute, one table, and across
clusters of many nodes."""

from __future__ import annotations

from collections import Counter

import pytest

from kade.scheduler.constraints import Constraint, check
from kade.scheduler.sim import Simulation, app_spec, node

T0 = 90_000.0
N1 = node("n1", attributes={"az": "1a", "rack": "r1", "ssd": "true"})


@pytest.mark.parametrize(("raw", "counts", "why"), [
    # field values: hostname (or @hostname) is the node's name, anything else an attribute
    (["hostname", "IS", "n1"], {}, None),
    (["@hostname", "IS", "n2"], {}, "@hostname=n1, not n2 (@hostname IS n2)"),
    (["az", "CLUSTER", "1a"], {}, None),
    (["az", "CLUSTER", "1b"], {}, "az=1a, not 1b (az CLUSTER 1b)"),
    (["ssd", "IS", "true"], {}, None),
    (["gpu", "IS", "true"], {}, "has no attribute 'gpu' (gpu IS true)"),
    (["rack", "LIKE", "r[0-9]"], {}, None),
    (["rack", "LIKE", "r"], {}, "rack=r1 (rack LIKE r)"),  # a full match, as in Marathon
    (["rack", "UNLIKE", "r1"], {}, "rack=r1 (rack UNLIKE r1)"),
    (["rack", "UNLIKE", "r2"], {}, None),
    (["gpu", "UNLIKE", "yes"], {}, None),  # a node without the attribute is unlike anything
    (["gpu", "LIKE", ".*"], {}, "has no attribute 'gpu' (gpu LIKE .*)"),
    # counting operators: the app's tasks per value of the field
    (["hostname", "UNIQUE"], {}, None),
    (["hostname", "UNIQUE"], {"n1": 1}, "hostname=n1 already runs a task of the app "
                                        "(hostname UNIQUE)"),
    (["az", "UNIQUE"], {"1b": 1}, None),
    (["az", "UNIQUE"], {"1a": 1}, "az=1a already runs a task of the app (az UNIQUE)"),
    (["az", "MAX_PER", "2"], {"1a": 1}, None),
    (["az", "MAX_PER", "2"], {"1a": 2}, "az=1a has 2 tasks already (az MAX_PER 2)"),
    (["hostname", "MAX_PER", "1"], {"n1": 1}, "hostname=n1 has 1 tasks already "
                                             "(hostname MAX_PER 1)"),
    (["az", "GROUP_BY"], {}, None),
    (["az", "GROUP_BY"], {"1a": 1, "1b": 1}, None),  # every group even: any
    (["az", "GROUP_BY"], {"1a": 2, "1b": 1}, "az=1a has 2 tasks, more than another group "
                                             "(az GROUP_BY)"),
    (["az", "GROUP_BY", "3"], {"1a": 1, "1b": 1}, "az=1a has 1 tasks, more than another "
                                                  "group (az GROUP_BY 3)"),  # 1c still empty
    (["az", "GROUP_BY", "2"], {"1a": 1, "1b": 1}, None),
])
def test_each_operator_on_one_node(raw: list[str], counts: dict[str, int],
                                   why: str | None) -> None:
    assert check(Constraint.parse(raw), N1, counts) == why


def zones(n: int) -> Simulation:
    sim = Simulation()
    for i in range(n):
        sim.add_node(node(f"node-{i:04d}", cpus=4, attributes={
            "az": ("1a", "1b", "1c")[i % 3], "rack": f"r{i % 10}"}))
    return sim


def by(sim: Simulation, app_id: str, field: str) -> Counter[str]:
    return Counter(sim.nodes[t.node].attributes[field] for t in sim.active(app_id))


def test_group_by_spreads_evenly_over_the_zones_of_many_nodes() -> None:
    sim = zones(300)
    sim.add_app(app_spec("/web", instances=100, constraints=[["az", "GROUP_BY"]]))
    sim.step(T0)
    assert by(sim, "/web", "az") == Counter({"1a": 34, "1b": 33, "1c": 33})
    assert len({t.node for t in sim.active("/web")}) == 100  # and over nodes, one each


def test_max_per_and_unique_across_many_nodes() -> None:
    sim = zones(60)
    sim.add_app(app_spec("/per-rack", instances=40, constraints=[["rack", "MAX_PER", "3"]]))
    sim.add_app(app_spec("/one-per-node", instances=70, constraints=[["hostname", "UNIQUE"]]))
    p = sim.step(T0)
    assert set(by(sim, "/per-rack", "rack").values()) == {3}
    assert len(sim.active("/per-rack")) == 30
    assert Counter(t.node for t in sim.active("/one-per-node")).most_common(1)[0][1] == 1
    entry = p.queue["/one-per-node"]
    assert entry is not None and entry.waiting.endswith("; and 50 more")


def test_constraints_on_attributes_pick_the_nodes_of_one_zone() -> None:
    sim = zones(30)
    sim.add_app(app_spec("/in-1b", instances=12, constraints=[["az", "CLUSTER", "1b"],
                                                               ["hostname", "UNIQUE"]]))
    sim.step(T0)
    assert by(sim, "/in-1b", "az") == Counter({"1b": 10})
    entry = sim.queue["/in-1b"]
    assert entry.waiting.startswith("no node fits: node-0000: az=1a, not 1b (az CLUSTER 1b)")
