"""3-d transposed convolution (``conv_transpose3d``, ONNX ConvTranspose on 5-d input): TVM's frontend
lowers only the 1-d and 2-d ones (it raises on 5-d input), though relax has ``conv3d_transpose`` and
TOPI legalizes it in torch's layouts (NCDHW data, IODHW weight)."""

from __future__ import annotations

from typing import Any

from torch import fx

from graphopt.targets.lowering.converters import args_of


def convert_transposed_3d(node: fx.Node, importer: Any) -> Any | None:
    """The relax value of a 3-d transposed ``convolution`` node; None for any other convolution."""
    from tvm import relax

    data, kernel, bias, stride, padding, dilation, transposed, output_padding, groups = args_of(node)
    if not transposed or len(list(stride)) != 3:
        return None
    x = importer.env[data]
    out = importer.block_builder.emit(
        relax.op.nn.conv3d_transpose(
            x,
            importer.env[kernel],
            strides=list(stride),
            padding=list(padding),
            output_padding=list(output_padding),
            dilation=list(dilation),
            groups=int(groups),
            data_layout="NCDHW",
            kernel_layout="IODHW",
            out_dtype=str(node.meta["val"].dtype).removeprefix("torch."),
        )
    )
    if bias is None:
        return out
    return importer.block_builder.emit(relax.op.add(out, relax.op.reshape(importer.env[bias], (1, -1, 1, 1, 1))))
