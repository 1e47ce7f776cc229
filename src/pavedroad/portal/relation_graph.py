"""Lays out an entity's relation graph (depth 1) as a picture the page draws in SVG.

The entity sits in the middle; what it belongs to (owner, system, parent group, the
components that depend on it) stands in a column on its left, what it holds or uses
on its right, as in Backstage's catalog graph. Each edge carries its relation types.
Only coordinates and texts are computed here; the template writes the SVG, so every
text goes through the template's escaping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NODE_WIDTH = 190
NODE_HEIGHT = 46
ROOT_WIDTH = 220
ROOT_HEIGHT = 56
ROW_GAP = 14
COLUMN_GAP = 200
MARGIN = 12
MAX_NEIGHBOURS = 20
MAX_ROWS = 10
# Longer texts are cut with an ellipsis (the node's tooltip has the full ref).
MAX_LABEL_CHARS = 24
MAX_ROOT_LABEL_CHARS = 23
MAX_CAPTION_CHARS = 22
LABEL_POSITION = 0.62

# Relations whose target contains, owns or uses the entity: drawn on the left.
LEFT_RELATIONS = frozenset(
    {"ownedby", "partof", "childof", "memberof", "dependencyof", "apiconsumedby", "apiprovidedby"}
)


@dataclass
class GraphNode:
    ref: str
    kind: str
    label: str
    caption: str
    x: float
    y: float
    width: float
    height: float
    url: str | None
    resolved: bool = True
    root: bool = False
    more: bool = False

    @property
    def kind_class(self) -> str:
        return "kind-" + "".join(c for c in self.kind.lower() if c.isalnum())

    @property
    def label_x(self) -> float:
        return self.x + 14


@dataclass
class GraphEdge:
    path: str
    label: str
    label_x: float
    label_y: float
    resolved: bool = True


@dataclass
class GraphPicture:
    width: float
    height: float
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    hidden: int = 0

    @property
    def neighbour_count(self) -> int:
        return sum(1 for n in self.nodes if not n.root and not n.more)


def layout(
    graph: dict[str, Any], url_for: Callable[[str], str], more_url: str = "#related"
) -> GraphPicture:
    """The picture of ``CatalogReader.graph(ref, depth=1)``'s output."""
    root_ref: str = graph["root"]
    nodes = {n["ref"]: n for n in graph["nodes"]}
    types: dict[str, list[str]] = defaultdict(list)
    for edge in graph["edges"]:
        if edge["source"] == root_ref and edge["target"] != root_ref:
            types[edge["target"]].append(edge["type"])
    neighbours = sorted(
        types,
        key=lambda ref: (
            _side(types[ref]),
            types[ref][0].lower(),
            nodes.get(ref, {}).get("kind", "").lower(),
            ref,
        ),
    )
    hidden = 0
    if len(neighbours) > MAX_NEIGHBOURS:
        hidden = len(neighbours) - (MAX_NEIGHBOURS - 1)
        neighbours = neighbours[: MAX_NEIGHBOURS - 1]
    left = [r for r in neighbours if _side(types[r]) == 0]
    right = [r for r in neighbours if _side(types[r]) == 1]
    if hidden:
        right.append("")  # the "more" node
    left, right = _balance(left, right)
    return _place(root_ref, nodes, types, left, right, hidden, url_for, more_url)


def _side(relation_types: list[str]) -> int:
    return 0 if relation_types[0].lower() in LEFT_RELATIONS else 1


def _balance(left: list[str], right: list[str]) -> tuple[list[str], list[str]]:
    """Move overflow across so neither column is taller than ``MAX_ROWS``."""
    while len(right) > MAX_ROWS and len(left) < MAX_ROWS:
        left.append(right.pop(0 if right[0] else 1))
    while len(left) > MAX_ROWS and len(right) < MAX_ROWS:
        right.insert(0, left.pop())
    return left, right


def _column_height(count: int) -> float:
    return count * NODE_HEIGHT + max(count - 1, 0) * ROW_GAP


def _place(
    root_ref: str,
    nodes: dict[str, dict[str, Any]],
    types: dict[str, list[str]],
    left: list[str],
    right: list[str],
    hidden: int,
    url_for: Callable[[str], str],
    more_url: str,
) -> GraphPicture:
    height = max(_column_height(len(left)), _column_height(len(right)), ROOT_HEIGHT) + 2 * MARGIN
    x = MARGIN
    left_x = x
    if left:
        x += NODE_WIDTH + COLUMN_GAP
    root_x = x
    x += ROOT_WIDTH
    right_x = x + COLUMN_GAP
    width = (right_x + NODE_WIDTH if right else x) + MARGIN
    root_y = (height - ROOT_HEIGHT) / 2
    picture = GraphPicture(width=width, height=height, hidden=hidden)
    root = _node(
        root_ref, nodes.get(root_ref, {}), root_x, root_y, ROOT_WIDTH, ROOT_HEIGHT, url_for
    )
    root.root = True
    root.url = None
    for column, column_x, side in ((left, left_x, 0), (right, right_x, 1)):
        top = (height - _column_height(len(column))) / 2
        for row, ref in enumerate(column):
            y = top + row * (NODE_HEIGHT + ROW_GAP)
            if not ref:
                node = GraphNode(
                    ref="",
                    kind="more",
                    label=f"+ {hidden} more",
                    caption="see related objects",
                    x=column_x,
                    y=y,
                    width=NODE_WIDTH,
                    height=NODE_HEIGHT,
                    url=more_url,
                    more=True,
                )
                picture.nodes.append(node)
                continue
            node = _node(
                ref,
                nodes.get(ref, {"ref": ref, "resolved": False}),
                column_x,
                y,
                NODE_WIDTH,
                NODE_HEIGHT,
                url_for,
            )
            picture.nodes.append(node)
            picture.edges.append(_edge(root, node, side, ", ".join(types[ref])))
    picture.nodes.append(root)  # drawn last, above the edges' ends
    return picture


def _node(
    ref: str,
    data: dict[str, Any],
    x: float,
    y: float,
    width: float,
    height: float,
    url_for: Callable[[str], str],
) -> GraphNode:
    kind = str(data.get("kind") or ref.partition(":")[0] or "entity")
    name = str(data.get("title") or data.get("name") or ref.rpartition("/")[2])
    namespace = str(data.get("namespace") or "default")
    resolved = bool(data.get("resolved"))
    if namespace.lower() != "default":
        name = f"{namespace}/{name}"
    if resolved:
        caption = f"{kind} · {data['type']}" if data.get("type") else kind
    else:
        caption, name = "not in catalog", f"{kind.lower()}:{name}"
    limit = MAX_ROOT_LABEL_CHARS if width == ROOT_WIDTH else MAX_LABEL_CHARS
    return GraphNode(
        ref=ref,
        kind=kind,
        label=_shorten(name, limit),
        caption=_shorten(caption, MAX_CAPTION_CHARS),
        x=x,
        y=y,
        width=width,
        height=height,
        url=url_for(ref) if resolved else None,
        resolved=resolved,
    )


def _edge(root: GraphNode, node: GraphNode, side: int, label: str) -> GraphEdge:
    start_x = root.x if side == 0 else root.x + root.width
    end_x = node.x + node.width if side == 0 else node.x
    start_y = root.y + root.height / 2
    end_y = node.y + node.height / 2
    bend = (end_x - start_x) / 2
    controls = (
        (start_x, start_y),
        (start_x + bend, start_y),
        (end_x - bend, end_y),
        (end_x, end_y),
    )
    path = "M{:.1f},{:.1f} C{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}".format(
        *(v for point in controls for v in point)
    )
    # Labels sit past the middle of the curve, where the fanned-out edges are apart.
    label_x, label_y = _bezier_point(controls, LABEL_POSITION)
    return GraphEdge(
        path=path, label=label, label_x=label_x, label_y=label_y, resolved=node.resolved
    )


def _bezier_point(points: tuple[tuple[float, float], ...], t: float) -> tuple[float, float]:
    weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3)
    return (
        sum(w * p[0] for w, p in zip(weights, points, strict=True)),
        sum(w * p[1] for w, p in zip(weights, points, strict=True)),
    )


def _shorten(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
