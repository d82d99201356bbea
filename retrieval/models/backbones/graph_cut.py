"""A classification network cut before its classifier, found on its FX graph: the trunk of any torchvision model.

``cut_before_head(model, side, output)`` traces ``model`` (``torch.fx``), runs it once on a
``(1, 3, side, side)`` input recording every node's output shape (``ShapeProp``), and keeps the graph up to
the last node before the classifier (the first node inside ``fc``, ``classifier``, ``head`` or ``heads``) whose
output is

- ``map``: a ``(B, C, h, w)`` feature map with h, w > 1 (ResNet's ``layer4``, DenseNet's ReLU after ``norm5``,
  Swin's ``permute`` after ``norm``, VGG's ``avgpool``), or
- ``tokens``: a ``(B, T, C)`` token sequence (ViT's ``encoder.ln``).

torchvision's residual blocks (``BasicBlock``, ``Bottleneck``) stay whole modules of the graph, as the CPU
fusion of ``accel/fused.py`` expects: it replaces them by module, and tells a block from a stem by its type.
"""

from __future__ import annotations

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from torchvision.models.resnet import BasicBlock, Bottleneck

from ...errors import SettingsError

HEADS = ("fc", "classifier", "head", "heads")
RANKS = {"map": 4, "tokens": 3}


class _Tracer(torch.fx.Tracer):
    """``torch.fx``'s tracer, keeping torchvision's residual blocks whole."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (BasicBlock, Bottleneck)) or super().is_leaf_module(module, qualified_name)


def cut_before_head(model: nn.Module, side: int, output: str) -> tuple[torch.fx.GraphModule, tuple[int, ...]]:
    """``model`` (in eval mode) up to its last ``output`` kind of node before the classifier.

    Returns the cut module (``(B, 3, S, S)`` normalised input → that node's output) and that output's shape
    for a ``(1, 3, side, side)`` input.
    """
    graph = _Tracer().trace(model)
    module = torch.fx.GraphModule(model, graph)
    with torch.inference_mode():
        ShapeProp(module).propagate(torch.zeros(1, 3, side, side))
    node = _last_before_head(graph, RANKS[output])
    if node is None:
        raise SettingsError(f"{type(model).__name__} computes no {output} before its classifier: it has no trunk")
    (result,) = [candidate for candidate in graph.nodes if candidate.op == "output"]
    result.args = (node,)
    graph.eliminate_dead_code()
    module.delete_all_unused_submodules()
    module.recompile()
    return module, tuple(node.meta["tensor_meta"].shape)


def _last_before_head(graph: torch.fx.Graph, rank: int) -> torch.fx.Node | None:
    """The last node before the first classifier node whose output is a tensor of ``rank`` dimensions
    (for feature maps, with both spatial sides > 1)."""
    found = None
    for node in graph.nodes:
        if _in_head(node):
            break
        meta = node.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if shape is not None and len(shape) == rank and (rank != 4 or min(shape[2:]) > 1):
            found = node
    return found


def _in_head(node: torch.fx.Node) -> bool:
    """True when ``node`` runs inside one of the model's classifier modules."""
    paths = [node.target] if node.op == "call_module" else []
    paths += [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
    return any(str(path).split(".")[0] in HEADS for path in paths)
