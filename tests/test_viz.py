"""Tests of scratchgen.viz: the traced graph matches what autograd recorded, and the picture is written."""

import numpy as np
import pytest
from matplotlib.image import imread

import scratchgen as sg
from scratchgen import viz
from scratchgen.models import MLPClassifier
from scratchgen.nn import functional as F


def _mlp_loss():
    model = MLPClassifier(in_features=20, hidden=(16,), classes=3)
    x = sg.randn(8, 20)
    loss = F.cross_entropy(model(x), np.arange(8) % 3)
    return model, loss


def _recorded(root):
    """The ops and leaves reachable from root, found by a plain recursive walk (independent of trace)."""
    ops, leaves = {}, {}

    def visit(node):
        if isinstance(node, sg.Tensor):
            leaves[id(node)] = node
        elif id(node) not in ops:
            ops[id(node)] = node
            for parent in node.parents:
                visit(parent)

    visit(root._creator)
    return ops, leaves


def test_trace_of_an_mlp_loss_has_one_node_per_op_and_per_leaf():
    model, loss = _mlp_loss()
    params = dict(model.named_parameters())
    graph = viz.trace(loss, params)
    ops, leaves = _recorded(loss)
    assert sum(n.kind == "op" for n in graph.nodes) == len(ops)
    assert sum(n.kind != "op" for n in graph.nodes) == len(leaves)
    assert len(graph.edges) == sum(len(fn.parents) for fn in ops.values())
    labels = "\n".join(n.label for n in graph.nodes)
    for op in ("affine", "rectifier", "logsoftmax", "mean"):
        assert op in labels
    for name in params:  # every parameter is drawn, named, and marked as requiring grad
        node = next(n for n in graph.nodes if n.label.startswith(name + "\n"))
        assert node.kind == "parameter" and "requires_grad" in node.label
    assert graph.nodes[-1].label == "mean\n()"  # the root comes last: the loss


def test_layout_is_layered_in_forward_order_with_no_overlaps():
    _, loss = _mlp_loss()
    graph = viz.trace(loss)
    for a, b in graph.edges:
        assert graph.nodes[a].layer < graph.nodes[b].layer
    for row in graph.layers():
        positions = [graph.nodes[i].position for i in row]
        assert all(b - a >= 1 for a, b in zip(positions, positions[1:]))


def test_a_tensor_used_twice_is_one_node_with_two_edges():
    a = sg.tensor(np.ones(3), requires_grad=True)
    graph = viz.trace((a * a + 1.0).sum())
    leaves = [n for n in graph.nodes if n.kind != "op"]
    assert [n.kind for n in leaves] == ["parameter", "constant"]
    mul = next(i for i, n in enumerate(graph.nodes) if n.label.startswith("mul"))
    assert graph.edges.count((graph.nodes.index(leaves[0]), mul)) == 2
    assert any(n.label == "1" for n in leaves)  # a lifted number shows its value


def test_draw_graph_writes_a_png_and_leaves_the_graph_usable(tmp_path):
    model, loss = _mlp_loss()
    path = viz.draw_graph(loss, tmp_path / "graph.png", params=dict(model.named_parameters()), title="MLP")
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left behind
    loss.backward()  # drawing changed nothing autograd needs
    assert all(p.grad is not None for p in model.parameters())


def test_a_leaf_alone_is_drawn(tmp_path):
    x = sg.tensor(np.ones((2, 2)), requires_grad=True)
    assert len(viz.trace(x).nodes) == 1
    assert imread(viz.draw_graph(x, tmp_path / "leaf.png")).size


def test_refuses_a_graph_too_large_to_read_and_a_non_tensor():
    x = sg.tensor(np.ones(2), requires_grad=True)
    for _ in range(40):
        x = x * 1.0
    with pytest.raises(ValueError, match="more than 30 nodes"):
        viz.trace(x, max_nodes=30)
    with pytest.raises(TypeError, match="Tensor"):
        viz.trace(np.ones(2))
