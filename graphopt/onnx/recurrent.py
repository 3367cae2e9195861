"""ONNX RNN, GRU and LSTM as plain PyTorch, unrolled over the (static) sequence length.

onnx2torch has no converter for them. Each step is the op's definition in the onnx reference
implementation (``onnx/reference/ops/op_rnn.py``, ``op_gru.py``, ``op_lstm.py``): matmuls against
W and R, the gates' activations (``activations`` with their ``activation_alpha``/``activation_beta``,
``clip`` on their inputs), GRU's ``linear_before_reset``, LSTM's peepholes and ``input_forget``;
directions forward, reverse and bidirectional; ``layout`` 0 and 1. A Python loop over the steps
unrolls when graphopt traces the module, so every target sees static shapes only.

``sequence_lens`` (a run-time input is fine) masks the steps past each sequence's length, as ONNX
Runtime does: their outputs are zero, the state stops at the last valid step, and the reverse
direction runs each sequence backwards from its own last step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: Each activation ONNX's recurrent ops name, with its default alpha and beta (as the op of that name).
_ACTIVATIONS: dict[str, tuple[float | None, float | None]] = {
    "relu": (None, None),
    "tanh": (None, None),
    "sigmoid": (None, None),
    "softsign": (None, None),
    "softplus": (None, None),
    "affine": (1.0, 0.0),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (1.0, None),
    "scaledtanh": (1.0, 1.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
}

#: The gates per op and their default activations (f, g[, h]).
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULTS = {"RNN": ("Tanh",), "GRU": ("Sigmoid", "Tanh"), "LSTM": ("Sigmoid", "Tanh", "Tanh")}


def activation(name: str, alpha: float | None, beta: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise function ``name`` (case-insensitive, as ONNX's recurrent ops spell it)."""
    key = name.lower()
    a, b = alpha, beta
    functions: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softsign": lambda x: x / (1 + x.abs()),
        "softplus": lambda x: torch.log(1 + torch.exp(x)),
        "affine": lambda x: a * x + b,  # type: ignore[operator]
        "leakyrelu": lambda x: torch.where(x >= 0, x, a * x),  # type: ignore[operator]
        "thresholdedrelu": lambda x: torch.where(x > a, x, torch.zeros_like(x)),  # type: ignore[operator]
        "scaledtanh": lambda x: a * torch.tanh(b * x),  # type: ignore[operator]
        "hardsigmoid": lambda x: torch.clamp(a * x + b, 0, 1),  # type: ignore[operator]
        "elu": lambda x: torch.where(x >= 0, x, a * (torch.exp(x) - 1)),  # type: ignore[operator]
    }
    return functions[key]


def activations_of(op: str, attributes: Any, directions: int) -> list[tuple[str, float | None, float | None]]:
    """The (name, alpha, beta) of every activation, all directions' in order; alphas and betas are
    consumed in order by the functions that take one (ONNX Runtime's reading of the spec)."""
    names = [str(n) for n in attributes.get("activations", [])] or list(_DEFAULTS[op]) * directions
    if len(names) == len(_DEFAULTS[op]) and directions == 2:
        names = names * 2
    alphas = [float(v) for v in attributes.get("activation_alpha", [])]
    betas = [float(v) for v in attributes.get("activation_beta", [])]
    chosen = []
    for name in names:
        if name.lower() not in _ACTIVATIONS:
            raise NotImplementedError(f"{op} activation '{name}' is not one ONNX defines")
        default_alpha, default_beta = _ACTIVATIONS[name.lower()]
        alpha = (alphas.pop(0) if alphas else default_alpha) if default_alpha is not None else None
        beta = (betas.pop(0) if betas else default_beta) if default_beta is not None else None
        chosen.append((name, alpha, beta))
    return chosen


class Recurrent(nn.Module):
    """ONNX RNN / GRU / LSTM: ``forward`` takes the op's inputs in order (any optional one None)."""

    def __init__(
        self,
        op: str,
        direction: str,
        layout: int,
        functions: list[tuple[str, float | None, float | None]],
        clip: float | None,
        linear_before_reset: bool,
        input_forget: bool,
        outputs: int,
        sizes: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.op, self.direction, self.layout, self.clip = op, direction, layout, clip
        self.sizes = sizes  # (steps, batch, hidden) where the model declares them: symbolic_trace then follows
        self.functions = functions
        self.linear_before_reset, self.input_forget, self.outputs = linear_before_reset, input_forget, outputs

    def forward(
        self,
        x_in: torch.Tensor,
        w_in: torch.Tensor,
        rec: torch.Tensor,
        bias_in: torch.Tensor | None = None,
        sequence_lens: torch.Tensor | None = None,
        initial_h: torch.Tensor | None = None,
        initial_c: torch.Tensor | None = None,
        peep_in: torch.Tensor | None = None,
    ) -> Any:
        if self.layout == 1:
            x_in = x_in.transpose(0, 1)
            initial_h = initial_h.transpose(0, 1) if initial_h is not None else None
            initial_c = initial_c.transpose(0, 1) if initial_c is not None else None
        steps, batch, hidden = self.sizes or (x_in.shape[0], x_in.shape[1], rec.shape[-1])
        directions = 2 if self.direction == "bidirectional" else 1
        per = len(_DEFAULTS[self.op])
        lengths = sequence_lens.to(torch.int64) if sequence_lens is not None else None
        ys, hs, cs = [], [], []
        for d in range(directions):
            reverse = self.direction == "reverse" or d == 1
            zeros = x_in.new_zeros((batch, hidden))
            h0 = initial_h[d] if initial_h is not None else zeros
            c0 = initial_c[d] if initial_c is not None else zeros
            bias = bias_in[d] if bias_in is not None else x_in.new_zeros((2 * _GATES[self.op] * hidden,))
            peep = peep_in[d] if peep_in is not None else None
            fs = [activation(*f) for f in self.functions[d * per : (d + 1) * per]]
            x = _reversed(x_in, lengths, steps) if reverse else x_in
            y, h, c = self._direction(x, w_in[d], rec[d], bias, peep, h0, c0, fs, lengths, (steps, hidden))
            ys.append(_reversed(y, lengths, steps) if reverse else y)
            hs.append(h)
            cs.append(c)
        y_all = torch.stack(ys, dim=1)  # (steps, directions, batch, hidden)
        y_h, y_c = torch.stack(hs, dim=0), torch.stack(cs, dim=0)
        if self.layout == 1:
            y_all, y_h, y_c = y_all.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        results = (y_all, y_h, y_c)[: self.outputs]  # by position, as onnx2torch indexes a node's outputs
        return results[0] if self.outputs == 1 else results

    def _direction(
        self,
        x_in: torch.Tensor,
        w_in: torch.Tensor,
        rec: torch.Tensor,
        bias_in: torch.Tensor,
        peep_in: torch.Tensor | None,
        h: torch.Tensor,
        c: torch.Tensor,
        fs: list[Callable[[torch.Tensor], torch.Tensor]],
        lengths: torch.Tensor | None,
        sizes: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One direction over the steps of ``x_in`` (steps, batch, input) in order: Y (steps, batch, hidden), Y_h, Y_c."""
        steps, hidden = sizes
        gates = _GATES[self.op]
        w_b, r_b = bias_in[: gates * hidden], bias_in[gates * hidden :]
        xw = torch.matmul(x_in, w_in.t()) + w_b  # every step's input projection at once
        outputs = []
        for t in range(steps):
            if self.op == "RNN":
                new_h, new_c = fs[0](self._clip(xw[t] + torch.matmul(h, rec.t()) + r_b)), c
            elif self.op == "GRU":
                new_h, new_c = self._gru(xw[t], h, rec, r_b, fs, hidden), c
            else:
                new_h, new_c = self._lstm(xw[t] + torch.matmul(h, rec.t()) + r_b, c, peep_in, fs, hidden)
            if lengths is not None:
                valid = (lengths > t).unsqueeze(-1)
                h, c = torch.where(valid, new_h, h), torch.where(valid, new_c, c)
                outputs.append(torch.where(valid, new_h, torch.zeros_like(new_h)))
            else:
                h, c = new_h, new_c
                outputs.append(new_h)
        return torch.stack(outputs, dim=0), h, c

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, -self.clip, self.clip) if self.clip is not None else x

    def _gru(
        self,
        xw: torch.Tensor,
        h: torch.Tensor,
        rec: torch.Tensor,
        r_b: torch.Tensor,
        fs: list[Callable[[torch.Tensor], torch.Tensor]],
        hidden: int,
    ) -> torch.Tensor:
        f, g = fs
        x_z, x_r, x_h = _thirds(xw, hidden, -1)
        r_z, r_r, r_h = _thirds(rec, hidden, 0)
        b_z, b_r, b_h = _thirds(r_b, hidden, 0)
        z = f(self._clip(x_z + torch.matmul(h, r_z.t()) + b_z))
        r = f(self._clip(x_r + torch.matmul(h, r_r.t()) + b_r))
        if self.linear_before_reset:
            candidate = g(self._clip(x_h + r * (torch.matmul(h, r_h.t()) + b_h)))
        else:
            candidate = g(self._clip(x_h + torch.matmul(r * h, r_h.t()) + b_h))
        return (1 - z) * candidate + z * h

    def _lstm(
        self,
        gates: torch.Tensor,
        c: torch.Tensor,
        peep_in: torch.Tensor | None,
        fs: list[Callable[[torch.Tensor], torch.Tensor]],
        hidden: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        f, g, h_act = fs
        i, o, forget, cell = (gates[..., k * hidden : (k + 1) * hidden] for k in range(4))
        p_i, p_o, p_f = _thirds(peep_in, hidden, 0) if peep_in is not None else (None, None, None)
        i = f(self._clip(i + p_i * c if p_i is not None else i))
        forget = 1 - i if self.input_forget else f(self._clip(forget + p_f * c if p_f is not None else forget))
        new_c = forget * c + i * g(self._clip(cell))
        o = f(self._clip(o + p_o * new_c if p_o is not None else o))
        return o * h_act(new_c), new_c


def _thirds(x: torch.Tensor, size: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three consecutive slices of ``size`` along ``dim`` (0 or -1): a traceable ``chunk(3)``."""
    if dim == 0:
        return x[:size], x[size : 2 * size], x[2 * size : 3 * size]
    return x[..., :size], x[..., size : 2 * size], x[..., 2 * size : 3 * size]


def _reversed(x: torch.Tensor, lengths: torch.Tensor | None, steps: int) -> torch.Tensor:
    """``x`` (steps, batch, features) with each sequence reversed within its length (all of it without lengths)."""
    if lengths is None:
        return torch.flip(x, dims=(0,))
    position = torch.arange(steps, device=x.device).unsqueeze(1)  # (steps, 1)
    index = torch.where(position < lengths, lengths - 1 - position, position)  # (steps, batch)
    return torch.gather(x, 0, index.unsqueeze(-1).expand_as(x))


def _sizes(node: Any, graph: Any, layout: int) -> tuple[int, int, int] | None:
    """(steps, batch, hidden) from X's declared shape and ``hidden_size``, or None where either is unknown."""
    from graphopt.onnx.converters import _declared_shape

    shape = _declared_shape(graph, node.input_values[0])
    hidden = node.attributes.get("hidden_size")
    if not shape or len(shape) != 3 or None in shape or not shape[0] or not shape[1] or hidden is None:
        return None
    steps, batch = (shape[1], shape[0]) if layout else (shape[0], shape[1])
    return int(steps), int(batch), int(hidden)  # type: ignore[arg-type]


def register(add: Callable[..., None]) -> None:
    """Register the RNN, GRU and LSTM converters (every opset from 7 on) through ``add(op, versions, converter)``."""
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    def converter(node: Any, graph: Any) -> Any:
        op, a = node.operation_type, node.attributes
        direction = str(a.get("direction", "forward"))
        if direction not in ("forward", "reverse", "bidirectional"):
            raise NotImplementedError(f"{op} direction '{direction}' is not one ONNX defines")
        layout = int(a.get("layout", 0))
        if layout not in (0, 1):
            raise NotImplementedError(f"{op} layout {layout} is not 0 or 1")
        directions = 2 if direction == "bidirectional" else 1
        functions = activations_of(op, a, directions)
        if len(functions) != len(_DEFAULTS[op]) * directions:
            raise NotImplementedError(
                f"{op} takes {len(_DEFAULTS[op])} activations per direction, got {len(a.get('activations', []))}"
            )
        clip = float(a["clip"]) if "clip" in a else None
        module = Recurrent(
            op,
            direction,
            layout,
            functions,
            clip,
            bool(a.get("linear_before_reset", 0)),
            bool(a.get("input_forget", 0)),
            len(node.output_values),
            _sizes(node, graph, layout),
        )
        return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))

    for op in ("RNN", "GRU", "LSTM"):
        add(op, (7,), converter)
