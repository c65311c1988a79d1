"""A picture of the computation graph that autograd recorded: what ``loss.backward()`` will walk.

Every op applied to a tensor that requires a gradient leaves a record (see :mod:`scratchgen.autograd`):
the output tensor's ``_creator`` is the :class:`~scratchgen.autograd.Function` that made it, and the
function's ``parents`` are the ops that made its inputs (or the inputs themselves, for leaves).
Following those links back from a loss visits the whole graph. This module
follows them and draws what it finds, so a learner can *see* the graph their code built::

    model = MLPClassifier(in_features=20, hidden=(16,), classes=3)
    loss = F.cross_entropy(model(x), y)
    scratchgen.viz.draw_graph(loss, "graph.png", params=dict(model.named_parameters()))

What the picture shows, top to bottom in the order the forward pass ran:

* **ops** (blue, rounded): one box per recorded op, its name (``Function.name()``) and the shape of
  the tensor it produced; the last one made the root (usually the loss);
* **leaves that require grad** (orange): the tensors whose ``.grad`` ``backward()`` fills, labelled with
  their parameter names when ``params`` is given (``dict(model.named_parameters())``);
* **constants** (grey): inputs that need no gradient: the data, the labels' one-hot matrix, numbers.

Arrows point the way data flows in the forward pass; ``backward()`` walks them in reverse.

The layout is ours, with no graph library: :func:`trace` puts each op one layer below the deepest of its
inputs (its longest path from a leaf), each leaf just above the first op that uses it, and orders every
layer by the mean position of the nodes feeding it (the barycentre heuristic of Sugiyama et al. 1981,
"Methods for visual understanding of hierarchical system structures"), which untangles most crossings in
graphs of this size. Drawing uses Matplotlib's object-oriented API only, as :mod:`scratchgen.plot` does.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from scratchgen import backend
from scratchgen.autograd import graph_node
from scratchgen.checkpoint import atomic_write
from scratchgen.tensor import Tensor

__all__ = ["Node", "Graph", "trace", "draw_graph"]

OP, PARAMETER, CONSTANT = "op", "parameter", "constant"
_STYLE = {  # face colour, edge colour, box style of each kind of node
    OP: ("#dbe9f6", "#2b6ca3", "round,pad=0.35"),
    PARAMETER: ("#fde3c4", "#c2610c", "square,pad=0.35"),
    CONSTANT: ("#eeeeee", "#8a8a8a", "square,pad=0.35"),
}
_LEGEND = {
    OP: "op (its output requires grad)",
    PARAMETER: "leaf that requires grad (gets .grad)",
    CONSTANT: "constant (no gradient)",
}


@dataclass
class Node:
    """One box of the picture.

    Attributes:
        kind: "op", "parameter" (a leaf that requires grad) or "constant".
        label: the text in the box.
        layer: its row, 0 at the top; every edge goes from a smaller layer to a larger one.
        position: its place within the row, centred on 0.
        inputs: for an op, the indices of the nodes feeding it, in argument order.
    """

    kind: str
    label: str
    layer: int = 0
    position: float = 0.0
    inputs: list = field(default_factory=list)


@dataclass
class Graph:
    """The traced graph: ``nodes`` in the order the forward pass could have made them (inputs first) and
    ``edges`` as (from, to) index pairs, from an input to the op that used it. The root is the last node."""

    nodes: list
    edges: list

    def layers(self) -> list:
        """The nodes' indices row by row, each row ordered left to right."""
        rows = [[] for _ in range(max(n.layer for n in self.nodes) + 1)]
        for i, node in enumerate(self.nodes):
            rows[node.layer].append(i)
        return [sorted(row, key=lambda i: self.nodes[i].position) for row in rows]


def _shape(shape) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _leaf_label(t: Tensor, names: dict) -> tuple[str, str]:
    """(kind, label) of a leaf: its parameter name if known, its shape, and whether it requires grad."""
    name = names.get(id(t)) or t.name
    if t.requires_grad:
        return PARAMETER, f"{name or 'leaf'}\n{_shape(t.shape)}\nrequires_grad"
    if t.size == 1 and not name:  # a number lifted into the graph: show its value, not its shape
        return CONSTANT, f"{backend.to_numpy(t.data).reshape(-1)[0]:.4g}"
    return CONSTANT, f"{name or 'constant'}\n{_shape(t.shape)}"


def trace(root: Tensor, params=None, max_nodes: int = 300) -> Graph:
    """Follow the graph (each op's ``parents``) back from ``root`` and lay it out in layers.

    Args:
        root: the tensor whose graph to trace, usually a scalar loss before ``backward()``.
        params: optional {name: tensor}, e.g. ``dict(model.named_parameters())``, to name the leaves.
        max_nodes: refuse graphs larger than this; their picture would be unreadable.

    Returns:
        A :class:`Graph`. Each recorded op is one node (labelled with the shape of its output), each leaf
        tensor one node, however many times it is used.

    Raises:
        TypeError: ``root`` is not a Tensor.
        ValueError: the graph has more than ``max_nodes`` nodes.
    """
    if not isinstance(root, Tensor):
        raise TypeError(f"trace: expected the Tensor whose graph to draw, got {type(root).__name__}")
    names = {id(t): name for name, t in (params or {}).items()}
    nodes, edges, index = [], [], {}  # index: id(op or leaf tensor) -> node index
    visited = set()

    # The engine's iterative depth-first walk (so deep graphs are fine) over its nodes, ops and leaf
    # tensors: a node is appended after all its inputs, so the node list is in an order the forward pass
    # could have run, and the root comes last.
    stack = [(graph_node(root), False)]
    while stack:
        node, inputs_done = stack.pop()
        key = id(node)
        if inputs_done:
            index[key] = len(nodes)
            sources = [index[id(p)] for p in node.parents]
            nodes.append(Node(OP, f"{node.name()}\n{_shape(node.output_shape)}", inputs=sources))
            edges.extend((source, index[key]) for source in sources)
        elif key not in visited:
            visited.add(key)
            if isinstance(node, Tensor):
                index[key] = len(nodes)
                nodes.append(Node(*_leaf_label(node, names)))
            else:
                stack.append((node, True))
                stack.extend((p, False) for p in reversed(node.parents))
        if len(nodes) > max_nodes:
            raise ValueError(f"trace: the graph has more than {max_nodes} nodes, too many to draw readably; "
                             f"draw an intermediate tensor (one layer's output) instead, or raise max_nodes")
    graph = Graph(nodes, edges)
    _assign_layers(nodes)
    _order_layers(graph)
    return graph


def _assign_layers(nodes: list) -> None:
    """Ops one layer below their deepest input; leaves one layer above their first consumer."""
    consumers = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        node.layer = 1 + max((nodes[j].layer for j in node.inputs), default=-1) if node.kind == OP else 0
        for j in node.inputs:
            consumers[j].append(i)
    for j, node in enumerate(nodes):
        if node.kind != OP and consumers[j]:
            node.layer = min(nodes[i].layer for i in consumers[j]) - 1
    shift = min(node.layer for node in nodes)
    for node in nodes:
        node.layer -= shift


def _order_layers(graph: Graph, sweeps: int = 4) -> None:
    """Place each row's nodes near the mean position of their neighbours in other rows, sweeping down
    and up, keeping neighbours in a row at least one unit apart, on a grid of half units (so that a chain
    of ops stands in a straight line)."""
    nodes, rows = graph.nodes, graph.layers()
    neighbours = [[] for _ in nodes]
    for a, b in graph.edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    for row in rows:  # start in discovery order
        for place, i in enumerate(row):
            nodes[i].position = place - (len(row) - 1) / 2
    for sweep in range(sweeps):
        for row in rows if sweep % 2 == 0 else rows[::-1]:
            wanted = {}
            for i in row:
                others = [nodes[j].position for j in neighbours[i] if nodes[j].layer != nodes[i].layer]
                wanted[i] = _snap(sum(others) / len(others)) if others else nodes[i].position
            ranked = sorted(row, key=lambda i: (wanted[i], nodes[i].position))
            # Left to right, each node at its wanted place or one unit right of its left neighbour; then
            # shift the row so that on average the nodes sit where they wanted to be.
            placed = []
            for i in ranked:
                placed.append(wanted[i] if not placed else max(wanted[i], placed[-1] + 1))
            shift = _snap(sum(wanted[i] - x for i, x in zip(ranked, placed)) / len(ranked))
            for i, x in zip(ranked, placed):
                nodes[i].position = x + shift


def _snap(x: float) -> float:
    return round(2 * x) / 2


def draw_graph(root: Tensor, path, params=None, title: str | None = None, max_nodes: int = 300) -> str:
    """Write a PNG (or any format Matplotlib knows, by the suffix) of the graph that made ``root``.

    Args:
        root: the tensor to draw the graph of, usually a loss, before or after ``backward()``.
        path: the file to write (atomically).
        params: optional {name: tensor} to label parameters, e.g. ``dict(model.named_parameters())``.
        title: a title above the picture.
        max_nodes: refuse larger graphs (see :func:`trace`).

    Returns:
        The path written.
    """
    graph = trace(root, params, max_nodes)
    rows = graph.layers()
    left = min(n.position for n in graph.nodes) - 0.5
    right = max(n.position for n in graph.nodes) + 0.5
    width = right - left
    fig = Figure(figsize=(max(4.0, 1.9 * width), max(2.0, 0.95 * len(rows) + 0.8)))
    ax = fig.add_subplot()
    ax.set_xlim(left, right)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_axis_off()

    boxes = []
    for node in graph.nodes:
        face, edge, style = _STYLE[node.kind]
        boxes.append(ax.text(node.position, -node.layer, node.label, ha="center", va="center", fontsize=7.5,
                             family="monospace", bbox=dict(boxstyle=style, fc=face, ec=edge, lw=1.0)))
    for (a, b), uses in Counter(graph.edges).items():
        start, end = graph.nodes[a], graph.nodes[b]
        skip = end.layer - start.layer > 1  # bend long edges a little, around the boxes between
        ax.annotate("", xy=(end.position, -end.layer), xytext=(start.position, -start.layer),
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=0.9, shrinkA=1, shrinkB=1,
                                    patchA=boxes[a].get_bbox_patch(), patchB=boxes[b].get_bbox_patch(),
                                    connectionstyle=f"arc3,rad={0.15 if skip else 0.0}"))
        if uses > 1:  # x * x: one tensor feeding both inputs of an op; backward adds both gradients
            ax.text((start.position + end.position) / 2 + 0.08, -(start.layer + end.layer) / 2, f"×{uses}",
                    fontsize=7, color="#555555", ha="left", va="center")
    kinds = [k for k in (OP, PARAMETER, CONSTANT) if any(n.kind == k for n in graph.nodes)]
    ax.legend(handles=[Patch(fc=_STYLE[k][0], ec=_STYLE[k][1], label=_LEGEND[k]) for k in kinds],
              loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=math.ceil(len(kinds) / 2) if width < 3 else len(kinds),
              fontsize=7, frameon=False)
    if title:
        ax.set_title(title, pad=28 if width < 3 else 18)
    with atomic_write(path) as file:
        suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
        fig.savefig(file, format=suffix, dpi=110, bbox_inches="tight")
    return str(path)
