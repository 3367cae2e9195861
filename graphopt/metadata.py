"""Per-node facts every pass, report and target relies on: shape, dtype, parameter bytes, FLOPs.

``annotate`` runs the graph once on the example inputs (an ``fx.Interpreter``), so the shapes are the
ones PyTorch itself produced rather than a re-implementation of shape rules. FLOPs count a
multiply-add as two operations, the usual convention for GFLOP/s figures. A module kept whole (a
leaf the tracer does not enter, such as ``nn.TransformerEncoder``) whose kind has no formula here is
run once more under ``torch.utils.flop_counter``: ViT-B/16 read 0.23 GFLOP, its patch conv alone.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from graphopt.op_kinds import ELEMENTWISE, op_kind

META_KEY = "graphopt"
_TORCH_DIR = os.path.dirname(torch.__file__)
_GRAPHOPT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


@dataclass
class NodeInfo:
    """What ``annotate`` learned about one node."""

    kind: str
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    param_bytes: int = 0
    flops: int = 0
    source: str | None = None
    module_path: str = ""
    #: Per output: laid out row-major (``is_row_major``) on the example inputs.
    row_major: list[bool] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...] | None:
        return self.shapes[0] if self.shapes else None

    @property
    def dtype(self) -> str | None:
        return self.dtypes[0] if self.dtypes else None


def user_source(node: fx.Node) -> str | None:
    """The deepest frame of the node's stack trace that belongs to the user's code, as file:line."""
    trace = node.meta.get("stack_trace") or node.stack_trace
    if not trace:
        return None
    user_frames = [
        (path, line)
        for path, line in _FRAME.findall(trace)
        if not path.startswith(_TORCH_DIR) and not path.startswith(os.path.join(_GRAPHOPT_DIR, "graphopt"))
    ]
    if not user_frames:
        return None
    path, line = user_frames[-1]
    return f"{path}:{line}"


def module_path(node: fx.Node) -> str:
    """Dotted path of the innermost user module the node came from ("" at top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        path = list(stack.values())[-1][0]
        return re.sub(r"^L\['self'\]\.?", "", str(path))
    if node.op == "get_attr":
        return str(node.target).rpartition(".")[0]
    return ""


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _nbytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _module_param_bytes(module: nn.Module) -> int:
    return _nbytes(module.parameters()) + _nbytes(module.buffers())


def _flops(kind: str, submodule: nn.Module | None, inputs: list[torch.Tensor], out: list[torch.Tensor]) -> int:
    if not out:
        return 0
    numel = out[0].numel()
    if kind == "linear" and inputs:
        return 2 * numel * inputs[0].shape[-1]
    if kind.startswith("conv") and len(out[0].shape) >= 3:
        if isinstance(submodule, nn.modules.conv._ConvNd):
            per_output = submodule.in_channels // submodule.groups * math.prod(submodule.kernel_size)
        elif len(inputs) >= 2:
            per_output = math.prod(inputs[1].shape[1:])
        else:
            return 0
        return 2 * numel * per_output
    if kind == "matmul" and inputs:
        return 2 * numel * inputs[0].shape[-1]
    if kind == "multihead_attention" and isinstance(submodule, nn.MultiheadAttention) and len(inputs) >= 3:
        embed = submodule.embed_dim
        tokens_q, tokens_kv = inputs[0].numel() // embed, inputs[1].numel() // embed
        length = inputs[0].shape[1] if submodule.batch_first else inputs[0].shape[0]
        projections = 2 * embed * embed * (2 * tokens_q + 2 * tokens_kv)
        return projections + 2 * 2 * tokens_q * (tokens_kv // max(tokens_q // length, 1)) * embed
    if kind in ("batch_norm", "layer_norm"):
        return 2 * numel
    if kind == "softmax":
        return 3 * numel
    if kind in ELEMENTWISE:
        return numel
    if kind in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "mean") and inputs:
        return inputs[0].numel()
    return 0


# The counter knows the CUDA attention kernels; CPU attention is the same arithmetic.
def _cpu_attention_flops(query: Any, key: Any, value: Any, *_: Any, **__: Any) -> int:
    return int(sdpa_flop_count(query, key, value))  # the counter passes shapes


_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
_COUNTED_KEY = "graphopt_counted_flops"  # (input shapes, FLOPs) of a leaf module counted once


def _counted_flops(submodule: nn.Module, node: fx.Node, values: dict[fx.Node, Any]) -> int:
    """The matmul/conv/attention FLOPs of one call of ``submodule`` on the node's recorded inputs.
    With gradients enabled: under ``no_grad`` an eval-mode ``nn.TransformerEncoderLayer`` takes its
    fused fast path (``torch._transformer_encoder_layer_fwd``), which the counter does not see.
    The count depends on the input and weight shapes only, so it is kept in ``node.meta`` and reused when the
    graph is annotated again after each pass (the rerun of a ViT-B/16 encoder costs ~0.3 s)."""
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda arg: values.get(arg))
    shapes = [tuple(t.shape) for t in [*_tensors(list(args) + list(kwargs.values())), *submodule.parameters()]]
    cached = node.meta.get(_COUNTED_KEY)
    if cached is not None and cached[0] == shapes:
        return int(cached[1])
    try:
        with torch.enable_grad(), FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION) as counter:
            submodule(*args, **kwargs)
    except Exception:  # a count is not worth failing a capture for: the node keeps 0
        return 0
    node.meta[_COUNTED_KEY] = (shapes, int(counter.get_total_flops()))
    return int(counter.get_total_flops())


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[fx.Node, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as error:
            if not hasattr(error, "graphopt_node"):
                error.graphopt_node = n  # type: ignore[attr-defined]
            raise
        self.values[n] = result
        return result


def annotate(module: fx.GraphModule, example_inputs: tuple[torch.Tensor, ...]) -> Any:
    """Run ``module`` on ``example_inputs`` and store a ``NodeInfo`` in every ``node.meta``.

    Returns the outputs of that run, so a caller that needs them need not run the graph again.
    """
    recorder = _Recorder(module)
    with torch.no_grad():
        outputs = recorder.run(*example_inputs)
    for node in module.graph.nodes:
        value = recorder.values.get(node)
        out = _tensors(value)
        kind = op_kind(module, node)
        submodule = module.get_submodule(str(node.target)) if node.op == "call_module" else None
        inputs = [
            t for arg in node.args for t in _tensors(recorder.values.get(arg) if isinstance(arg, fx.Node) else None)
        ]
        param_bytes = 0
        flops = _flops(kind, submodule, inputs, out) if node.op not in ("placeholder", "output", "get_attr") else 0
        if submodule is not None:
            param_bytes = _module_param_bytes(submodule)
            if not flops and param_bytes and not submodule.training:  # training mode: a rerun would move BN statistics
                flops = _counted_flops(submodule, node, recorder.values)
        elif node.op == "get_attr":
            param_bytes = _nbytes(out)
        node.meta[META_KEY] = NodeInfo(
            kind=kind,
            shapes=[tuple(t.shape) for t in out],
            dtypes=[str(t.dtype).replace("torch.", "") for t in out],
            param_bytes=param_bytes,
            flops=flops,
            source=user_source(node),
            module_path=module_path(node),
            row_major=[is_row_major(t) for t in out],
        )
    return outputs


def annotation_key(module: fx.GraphModule) -> tuple[Any, ...] | None:
    """Everything ``annotate`` reads except the example inputs: equal keys, equal annotations.

    The graph's code (from the graph itself, not the last ``recompile``), every submodule's class and
    settings, the shape, dtype and strides of every tensor it holds (not the values: no ``NodeInfo``
    field depends on them) and the node metadata ``source`` and ``module_path`` come from. None when a
    node has no ``NodeInfo`` yet (nothing to keep). The pass manager compares the key before and after
    a pass and re-annotates only when it differs: most passes of a pipeline find nothing to do on most
    models, and each re-annotation runs the whole model in PyTorch (regnety_400mf: 1.2 s of CPU each).
    """
    nodes = list(module.graph.nodes)
    if not all(isinstance(n.meta.get(META_KEY), NodeInfo) for n in nodes):
        return None
    tensors = [(name, _tensor_key(t)) for name, t in module.state_dict(keep_vars=True).items()]
    attributes = [
        _tensor_key(_attribute(module, str(n.target))) for n in nodes if n.op == "get_attr"
    ]  # a get_attr may name a plain tensor attribute, outside the state dict
    submodules = [(name, type(m).__qualname__, m.extra_repr()) for name, m in module.named_modules()]
    meta = [(n.name, n.meta.get("stack_trace"), str(n.meta.get("nn_module_stack"))) for n in nodes]
    return (module.graph.python_code("self").src, tensors, attributes, submodules, meta)


def _tensor_key(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), str(value.dtype), tuple(value.stride()), str(value.device), type(value))
    return (type(value).__qualname__, repr(value) if isinstance(value, (int, float, bool, str, type(None))) else "")


def _attribute(module: nn.Module, target: str) -> Any:
    value: Any = module
    for part in target.split("."):
        value = getattr(value, part, None)
    return value


def is_row_major(tensor: torch.Tensor) -> bool:
    """Strides exactly those of a fresh tensor of this shape, size-1 dimensions included.

    Stricter than ``is_contiguous()``, which ignores the stride of a size-1 dimension: a transposed
    batch-1 tensor passes that test yet is strided at any other batch size.
    """
    expected, step = [], 1
    for size in reversed(tensor.shape):
        expected.append(step)
        step *= max(int(size), 1)
    return tuple(tensor.stride()) == tuple(reversed(expected))


def info(node: fx.Node) -> NodeInfo:
    """The ``NodeInfo`` of an annotated node (a bare one for nodes a pass just created)."""
    found = node.meta.get(META_KEY)
    return found if isinstance(found, NodeInfo) else NodeInfo(kind=node.op)
