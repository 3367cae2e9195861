"""Name the model output that is not a tensor, when that is why torch.export refused the model.

A compiled artifact returns tensors (alone, or in tuples, lists and dicts). A model whose output holds some
other object cannot be captured: torch.export fails with "Found <class ...> in output, which is not a known
type" and a paragraph about pytrees. The usual case is a Hugging Face model left at its default
``use_cache=True``: its output carries the key/value cache as a ``DynamicCache`` object (``GPT2Model``'s
``past_key_values``). The error says which output it is and what to do instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree

#: Leaves an output may have besides tensors (torch.export returns them as constants).
_PLAIN = (int, float, bool, str, type(None))


def non_tensor_output(outputs: Any) -> tuple[str, Any] | None:
    """(where in the outputs, the object) of the first leaf that is neither a tensor nor a plain constant.

    >>> non_tensor_output({"logits": torch.zeros(1), "cache": object()})[0]
    "['cache']"
    """
    leaves, _ = pytree.tree_flatten_with_path(outputs)
    for path, leaf in leaves:
        if not isinstance(leaf, (torch.Tensor, *_PLAIN)):
            return pytree.keystr(path) or "the output", leaf
    return None


def describe_non_tensor_output(model_name: str, outputs: Any) -> str | None:
    """The one-line reason ``model_name`` cannot be captured because of its ``outputs``, or None."""
    found = non_tensor_output(outputs)
    if found is None:
        return None
    where, leaf = found
    kind = type(leaf)
    message = (
        f"cannot capture {model_name}: its output {where} is a {kind.__module__}.{kind.__qualname__}, not a tensor; "
        "a compiled model returns tensors (or tuples, lists and dicts of them)"
    )
    if kind.__name__.endswith("Cache"):  # transformers' key/value caches: DynamicCache, StaticCache, ...
        return message + ": build the model with use_cache=False (config.use_cache = False) or return only its tensors"
    return message + ": wrap the model so it returns only tensors"
