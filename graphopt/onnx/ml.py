"""ONNX's ai.onnx.ml ops ArrayFeatureExtractor, Binarizer and TreeEnsemble as tensor arithmetic.

A tree ensemble is data-dependent control flow in the onnx reference (each sample walks its trees),
which no compiled target lowers; here every root-to-leaf path is enumerated at conversion, every
node's test is evaluated for every sample at once (one gather of the tested features, compares with
constant splits, set membership against a constant member table), and a path is taken where all of
its tests go its way (a gather of the tests along each path, padded to the deepest). Each sample
takes exactly one path per tree, so summing (or taking the min/max of) the taken paths' leaf weights
per target (a ``scatter_reduce``) is the reference's aggregation. No float64 matmul: TVM's torch
frontend builds every matmul with a float32 result; and the tests are gathered as int32, as TVM's
CPU build of a gather of bools fails LLVM verification.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from graphopt.onnx.ops import Function

ML_DOMAIN = "ai.onnx.ml"
#: TreeEnsemble's node modes (``nodes_modes``): BRANCH_LEQ .. BRANCH_MEMBER
LEQ, LT, GTE, GT, EQ, NEQ, MEMBER = range(7)
#: TreeEnsemble's aggregate_function values
AVERAGE, SUM, MIN, MAX = range(4)


def array_feature_extractor(data: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The elements of ``data``'s last axis at ``indices`` (all of them, flattened); a 1-D ``data`` gives one row."""
    picked = data.index_select(-1, indices.to(torch.int64).reshape(-1))
    return picked.reshape(1, -1) if data.dim() == 1 else picked


def binarizer(x: torch.Tensor, *, threshold: float) -> torch.Tensor:
    return (x > threshold).to(x.dtype)


def _array(value: Any) -> np.ndarray:
    if value is None:
        return np.zeros((0,))
    if hasattr(value, "to_numpy"):
        return np.asarray(value.to_numpy())
    return np.asarray(value)


class Trees:
    """A TreeEnsemble's attributes as the constant tensors its evaluation needs."""

    def __init__(self, a: dict[str, Any]) -> None:
        features = [int(v) for v in a["nodes_featureids"]]
        count = len(features)
        self.features = np.asarray(features, dtype=np.int64)
        self.modes = _array(a["nodes_modes"]).astype(np.int64).reshape(-1)
        self.splits = _array(a["nodes_splits"]).astype(np.float64).reshape(-1)
        tracks = a.get("nodes_missing_value_tracks_true")
        self.missing_true = np.asarray(tracks if tracks else [0] * count, dtype=bool)
        self.members = self._members(_array(a.get("membership_values")).astype(np.float64).reshape(-1))
        true_ids, false_ids = list(a["nodes_truenodeids"]), list(a["nodes_falsenodeids"])
        true_leaf, false_leaf = list(a["nodes_trueleafs"]), list(a["nodes_falseleafs"])
        weights = _array(a["leaf_weights"]).astype(np.float64).reshape(-1)
        targets = [int(v) for v in a["leaf_targetids"]]
        self.targets = int(a["n_targets"])
        roots = [int(v) for v in a["tree_roots"]]
        self.trees = len(roots)
        paths: list[tuple[list[tuple[int, bool]], int]] = []  # (tests taken, leaf)

        def walk(node: int, taken: list[tuple[int, bool]]) -> None:
            for want, child, is_leaf in (
                (True, true_ids[node], true_leaf[node]),
                (False, false_ids[node], false_leaf[node]),
            ):
                step = [*taken, (node, want)]
                if is_leaf:
                    paths.append((step, int(child)))
                else:
                    walk(int(child), step)

        for root in roots:
            if true_leaf[root] and false_leaf[root] and true_ids[root] == false_ids[root]:
                paths.append(([], int(true_ids[root])))  # a tree that is one leaf
            else:
                walk(root, [])
        depth = max([len(taken) for taken, _ in paths] + [1])
        self.path_nodes = np.zeros((len(paths), depth), dtype=np.int64)  # padded with node 0 ...
        self.path_wants = np.zeros((len(paths), depth), dtype=np.int32)
        self.path_free = np.ones((len(paths), depth), dtype=bool)  # ... that the padding does not test
        self.leaf_weight = np.zeros(len(paths))
        self.leaf_target = np.zeros(len(paths), dtype=np.int64)
        for p, (taken, leaf) in enumerate(paths):
            for d, (node, want) in enumerate(taken):
                self.path_nodes[p, d], self.path_wants[p, d], self.path_free[p, d] = node, want, False
            self.leaf_weight[p] = weights[leaf]
            self.leaf_target[p] = targets[leaf]

    def _members(self, values: np.ndarray) -> np.ndarray:
        """[nodes, most members] member table (NaN padded), the NaN-separated sets given to the MEMBER
        nodes in node order."""
        sets: list[list[float]] = [[]]
        for value in values:
            if np.isnan(value):
                sets.append([])
            else:
                sets[-1].append(float(value))
        table = np.full((len(self.modes), max([len(s) for s in sets] + [1])), np.nan)
        member_nodes = [i for i, mode in enumerate(self.modes) if mode == MEMBER]
        for node, members in zip(member_nodes, sets, strict=False):
            table[node, : len(members)] = members
        return table


def tree_ensemble(x: torch.Tensor, *, trees: Trees, aggregate: int) -> torch.Tensor:
    """ONNX TreeEnsemble (ai.onnx.ml 5) on [batch, features] -> [batch, n_targets], in float64."""
    value = x.to(torch.float64).index_select(1, torch.from_numpy(trees.features))  # (batch, nodes)
    splits = torch.from_numpy(trees.splits)
    compares = {
        LEQ: lambda: value <= splits,
        LT: lambda: value < splits,
        GTE: lambda: value >= splits,
        GT: lambda: value > splits,
        EQ: lambda: value == splits,
        NEQ: lambda: value != splits,
        MEMBER: lambda: (value.unsqueeze(-1) == torch.from_numpy(trees.members)).to(torch.int32).sum(-1) > 0,
    }
    passed = torch.zeros(value.shape, dtype=torch.bool)
    for mode in sorted(set(trees.modes.tolist())):
        passed = torch.where(torch.from_numpy(trees.modes == mode), compares[mode](), passed)
    if trees.missing_true.any():
        passed = passed | (torch.isnan(value) & torch.from_numpy(trees.missing_true))
    # a path is taken where each of its tests went its way (padding positions are free)
    nodes = torch.from_numpy(trees.path_nodes)
    went = passed.to(torch.int32).index_select(1, nodes.reshape(-1)).reshape(value.shape[0], *nodes.shape)
    agreed = (went == torch.from_numpy(trees.path_wants)) | torch.from_numpy(trees.path_free)
    taken = agreed.to(torch.int32).sum(-1) == nodes.shape[1]  # (batch, paths)
    weight = torch.from_numpy(trees.leaf_weight)
    index = torch.from_numpy(trees.leaf_target).reshape(1, -1).expand(value.shape[0], -1)
    if aggregate in (SUM, AVERAGE):
        out = torch.zeros((value.shape[0], trees.targets), dtype=torch.float64)
        out = out.scatter_reduce(1, index, taken.to(torch.float64) * weight, "sum")
        if aggregate == AVERAGE:
            out = out / trees.trees
    else:
        finfo = torch.finfo(x.dtype)
        start = finfo.max if aggregate == MIN else finfo.min
        out = torch.full((value.shape[0], trees.targets), start, dtype=torch.float64)
        values = torch.where(taken, weight, torch.full((), start, dtype=torch.float64))
        out = out.scatter_reduce(1, index, values, "amin" if aggregate == MIN else "amax")
    return out.type_as(x)


def dotless_module_names() -> None:
    """Make onnx2torch name a node's module without the dots of its domain (``ai.onnx.ml/Binarizer``,
    which ``torch.nn.Module.add_module`` refuses); idempotent. Its names of default-domain nodes stay."""
    from onnx2torch.onnx_graph import OnnxGraph

    if getattr(OnnxGraph.generate_node_name, "graphopt_dotless", False):
        return
    original = OnnxGraph.generate_node_name

    def generate_node_name(node: Any) -> str:
        return str(original(node)).replace(".", "_")

    generate_node_name.graphopt_dotless = True  # type: ignore[attr-defined]
    OnnxGraph.generate_node_name = staticmethod(generate_node_name)  # type: ignore[method-assign]


def register() -> None:
    """Register the ai.onnx.ml converters in onnx2torch's registry (``add`` and ``replace`` cover the
    default domain only)."""
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    dotless_module_names()

    def result(module: Any, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def array_feature_converter(node: Any, graph: Any) -> Any:
        return result(Function(array_feature_extractor), node)

    def binarizer_converter(node: Any, graph: Any) -> Any:
        return result(Function(binarizer, threshold=float(node.attributes.get("threshold", 0.0))), node)

    def tree_converter(node: Any, graph: Any) -> Any:
        a = node.attributes
        if int(a.get("post_transform", 0)):
            raise NotImplementedError(f"TreeEnsemble post_transform {int(a['post_transform'])} (only 0, none)")
        aggregate = int(a.get("aggregate_function", SUM))
        if aggregate not in (AVERAGE, SUM, MIN, MAX):
            raise NotImplementedError(f"TreeEnsemble aggregate_function {aggregate}")
        return result(Function(tree_ensemble, trees=Trees(dict(a)), aggregate=aggregate), node)

    for op, version, converter in (
        ("ArrayFeatureExtractor", 1, array_feature_converter),
        ("Binarizer", 1, binarizer_converter),
        ("TreeEnsemble", 5, tree_converter),
    ):
        _CONVERTER_REGISTRY.setdefault(OperationDescription(ML_DOMAIN, op, version), converter)
