"""More ONNX ops onnx2torch lacks, as plain PyTorch modules with their converters (see ``onnx_ops``).

Each follows the op's ONNX definition (the onnx reference implementation) and is checked on the
onnx package's node test cases (``benchmarks/onnx_conformance.py``, ``tests/test_onnx_ops.py``):
GridSample (torch's ``grid_sample``, which ONNX's definition follows), AffineGrid,
RotaryEmbedding, LinearAttention (the recurrent state update, every ``update_rule``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


class Function(nn.Module):
    """An op that is one torch function of its inputs (and constant keyword arguments)."""

    def __init__(self, function: Callable[..., Any], **options: Any) -> None:
        super().__init__()
        self.function, self.options = function, options

    def forward(self, *args: Any) -> Any:
        return self.function(*args, **self.options)


def grid_sample(x: torch.Tensor, grid: torch.Tensor, *, mode: str, padding: str, align_corners: bool) -> torch.Tensor:
    """ONNX GridSample on 4-D and 5-D inputs through torch's ``grid_sample``."""
    name = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
    return torch.nn.functional.grid_sample(x, grid, mode=name, padding_mode=padding, align_corners=align_corners)


def affine_grid(theta: torch.Tensor, size: torch.Tensor, *, align_corners: bool) -> torch.Tensor:
    shape = [int(s) for s in size.reshape(-1).tolist()]
    return torch.nn.functional.affine_grid(theta, shape, align_corners=align_corners)


def rotary_embedding(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    *,
    interleaved: bool,
    dim: int,
    num_heads: int,
) -> torch.Tensor:
    """ONNX RotaryEmbedding (opset 23): input (B, H, S, D) or (B, S, H*D)."""
    shape = x.shape
    value = x.transpose(1, 2) if x.dim() == 4 else x.reshape(shape[0], shape[1], num_heads, -1)
    rotary = dim or value.shape[-1]
    rotate, keep = value[..., :rotary], value[..., rotary:]
    if position_ids is not None:
        cos, sin = cos[position_ids.to(torch.int64)], sin[position_ids.to(torch.int64)]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    if interleaved:
        first, second = rotate[..., 0::2], rotate[..., 1::2]
    else:
        first, second = rotate.chunk(2, dim=-1)
    real = cos * first - sin * second
    imaginary = sin * first + cos * second
    if interleaved:
        rotated = torch.stack((real, imaginary), dim=-1).reshape(rotate.shape)
    else:
        rotated = torch.cat((real, imaginary), dim=-1)
    result = torch.cat((rotated, keep), dim=-1)
    return result.reshape(shape) if x.dim() == 3 else result.transpose(1, 2)


def linear_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    past_state: torch.Tensor | None = None,
    decay: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    *,
    q_heads: int,
    kv_heads: int,
    scale: float,
    rule: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX LinearAttention: the per-step state recurrence (decay gate, delta correction), in float32."""
    batch, steps, _ = query.shape
    d_k = query.shape[-1] // q_heads
    d_v = value.shape[-1] // kv_heads
    group = q_heads // kv_heads

    def heads(t: torch.Tensor, count: int) -> torch.Tensor:
        return t.reshape(batch, steps, count, -1).transpose(1, 2).to(torch.float32)

    q, k, v = heads(query, q_heads), heads(key, kv_heads), heads(value, kv_heads)
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gating:
        assert decay is not None, "LinearAttention's gated rules need decay"
        g = heads(decay, kv_heads)
    if delta:
        assert beta is not None, "LinearAttention's delta rules need beta"
        b = beta.reshape(batch, steps, beta.shape[-1], 1).transpose(1, 2).to(torch.float32)
    if past_state is not None:
        state, state_dtype = past_state.to(torch.float32), past_state.dtype
    else:
        state, state_dtype = query.new_zeros((batch, kv_heads, d_k, d_v), dtype=torch.float32), query.dtype
    factor = scale if scale else 1.0 / math.sqrt(d_k)
    outputs = []
    for i in range(steps):
        q_t, k_t, v_t = q[:, :, i], k[:, :, i], v[:, :, i]
        if gating:
            state = state * torch.exp(g[:, :, i]).unsqueeze(-1)
        if delta:
            v_t = b[:, :, i] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state.repeat_interleave(group, dim=1) if group > 1 else state
        outputs.append(factor * torch.einsum("bhd,bhdm->bhm", q_t, read))
    output = torch.stack(outputs, dim=2).transpose(1, 2).reshape(batch, steps, q_heads * d_v)
    return output.to(query.dtype), state.to(state_dtype)


class LinearAttention(nn.Module):
    """Named inputs: onnx2torch passes the ones after a skipped optional input by name."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = options

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        past_state: torch.Tensor | None = None,
        decay: torch.Tensor | None = None,
        beta: torch.Tensor | None = None,
    ) -> Any:
        return linear_attention(query, key, value, past_state, decay, beta, **self.options)


def register(add: Callable[..., None], replace: Callable[..., None]) -> None:
    """Register this module's converters (``add``: where onnx2torch has none; ``replace``: over its own)."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def result(module: nn.Module, node: Any) -> Any:
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    def grid_sample_converter(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = Function(
            grid_sample,
            mode=_text(attributes.get("mode"), "linear"),
            padding=_text(attributes.get("padding_mode"), "zeros"),
            align_corners=bool(attributes.get("align_corners", 0)),
        )
        return result(module, node)

    replace("GridSample", (16,), grid_sample_converter)

    def affine_grid_converter(node: Any, graph: Any) -> Any:
        return result(Function(affine_grid, align_corners=bool(node.attributes.get("align_corners", 0))), node)

    add("AffineGrid", (20,), affine_grid_converter)

    def rotary_converter(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = Function(
            rotary_embedding,
            interleaved=bool(attributes.get("interleaved", 0)),
            dim=int(attributes.get("rotary_embedding_dim", 0)),
            num_heads=int(attributes.get("num_heads", 0)),
        )
        return result(module, node)

    add("RotaryEmbedding", (23,), rotary_converter)

    def linear_attention_converter(node: Any, graph: Any) -> Any:
        attributes = node.attributes
        module = LinearAttention(
            q_heads=int(attributes["q_num_heads"]),
            kv_heads=int(attributes["kv_num_heads"]),
            scale=float(attributes.get("scale", 0.0)),
            rule=_text(attributes.get("update_rule"), "gated_delta"),
        )
        return result(module, node)

    add("LinearAttention", (27,), linear_attention_converter)
