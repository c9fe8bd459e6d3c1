"""The org graph as SVG, laid out by Graphviz's ``dot`` (Debian's ``graphviz``).

Agents are boxes, topics are ellipses; edges are publishes (agent → topic), subscribes
(topic → agent) and spawned (dashed, parent → child). Every node links to its page and
carries an ``id`` the live view updates rates by.
"""

from __future__ import annotations

import graphviz

from kafkaorg.org_overview import OrgGraph

_STATUS_COLORS = {"running": "#2e7d32", "paused": "#f9a825", "failed": "#c62828"}


def _dot_name(node_id: str) -> str:
    """``dot`` reads ``a:b`` in an edge as node ``a``, port ``b``."""
    return node_id.replace(":", "__")


def graph_dot(graph: OrgGraph) -> graphviz.Digraph:
    dot = graphviz.Digraph(
        name=graph.org,
        graph_attr={"rankdir": "LR", "bgcolor": "transparent", "fontname": "sans-serif"},
        node_attr={"fontname": "sans-serif", "fontsize": "11"},
        edge_attr={"fontname": "sans-serif", "fontsize": "9", "color": "#607d8b"},
    )
    for node in graph.nodes:
        url = f"/orgs/{graph.org}/{'agents' if node.kind == 'agent' else 'records?topic='}"
        href = f"{url}/{node.name}" if node.kind == "agent" else f"{url}{node.name}"
        attrs = {
            "id": node.id,
            "URL": href,
            "target": "_top",
            "tooltip": f"{node.kind} {node.name}: {node.detail}",
        }
        if node.kind == "agent":
            color = _STATUS_COLORS.get(node.status or "", "#546e7a")
            dot.node(
                _dot_name(node.id),
                f"{node.name}\n({node.detail})",
                shape="box",
                style="rounded,filled",
                fillcolor="#e3f2fd",
                color=color,
                penwidth="2",
                **attrs,
            )
        else:
            dot.node(
                _dot_name(node.id),
                node.name,
                shape="ellipse",
                style="filled",
                fillcolor="#fff8e1",
                **attrs,
            )
    for edge in graph.edges:
        attrs = {"id": edge.id}
        if edge.kind == "spawned":
            attrs |= {"style": "dashed", "color": "#8e24aa", "label": "spawned"}
        elif edge.rate is not None:
            attrs["label"] = f"{edge.rate:.1f}/s"
        else:
            attrs["label"] = "…"
        dot.edge(_dot_name(edge.source), _dot_name(edge.target), **attrs)
    return dot


def graph_svg(graph: OrgGraph) -> str:
    """Inline SVG (no XML prolog) of the graph."""
    svg = graph_dot(graph).pipe(format="svg", encoding="utf-8")
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
