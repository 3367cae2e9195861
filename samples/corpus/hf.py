"""Hugging Face ``transformers`` model definitions from tiny configs, random weights (no download).

One entry is full size: ``hf_vit_base``, ViT-B/16 from ``ViTConfig``'s defaults (224x224, 12 layers,
width 768, 86.6M parameters), beside own.py's ``vit_b16`` (the same size on ``nn.TransformerEncoderLayer``).

Each model is wrapped so it takes and returns plain tensors (``last_hidden_state`` or logits). The
attention masks have padded positions, so the masking path is exercised, not only the all-ones case.
No entry exists where ``transformers`` is not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from samples.corpus import Entry

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}


class Wrapped(nn.Module):
    """``model(**named inputs)`` reduced to one output tensor, selected by ``pick``."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], pick: Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.names, self.pick = model, names, pick

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.pick(self.model(**dict(zip(self.names, inputs, strict=True))))


def _text(vocab: int, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, length))
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, length - 3 :] = 0  # the second sequence is padded
    return ids, mask


def _hidden(output: Any) -> torch.Tensor:
    return output.last_hidden_state


def _logits(output: Any) -> torch.Tensor:
    return output.logits


def _bert() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=64, max_position_embeddings=32, attn_implementation="eager", **TINY)
    return Wrapped(BertModel(config, add_pooling_layer=False), ("input_ids", "attention_mask"), _hidden), _text(64)


def _roberta() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(vocab_size=64, max_position_embeddings=40, num_labels=3, attn_implementation="eager", **TINY)
    return Wrapped(RobertaForSequenceClassification(config), ("input_ids", "attention_mask"), _logits), _text(64)


def _gpt2() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager")
    config.use_cache = False
    return Wrapped(GPT2LMHeadModel(config), ("input_ids", "attention_mask"), _logits), _text(64)


def _llama() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        max_position_embeddings=32,
        num_key_value_heads=1,
        attn_implementation="eager",
        use_cache=False,
        **TINY,
    )  # grouped-query attention (2 heads, 1 key/value head), rotary embeddings, RMSNorm, SiLU gate
    return Wrapped(LlamaForCausalLM(config), ("input_ids", "attention_mask"), _logits), _text(64)


def _t5_encoder() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2, attn_implementation="eager"
    )
    return Wrapped(T5EncoderModel(config), ("input_ids", "attention_mask"), _hidden), _text(64)


def _vit() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=16, patch_size=4, num_labels=5, attn_implementation="eager", **TINY)
    return Wrapped(ViTForImageClassification(config), ("pixel_values",), _logits), (torch.randn(2, 3, 16, 16),)


def _vit_base() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(num_labels=1000, attn_implementation="eager")  # ViT-B/16: 224x224, 12 layers, width 768
    return Wrapped(ViTForImageClassification(config), ("pixel_values",), _logits), (torch.randn(1, 3, 224, 224),)


def _whisper_encoder() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        num_mel_bins=8,
        d_model=16,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        max_source_positions=8,
        attn_implementation="eager",
    )  # two Conv1d (the second with stride 2) over 16 mel frames, sinusoidal positions, pre-norm layers
    return Wrapped(WhisperEncoder(config), ("input_features",), _hidden), (torch.randn(2, 8, 16),)


#: More architectures, one table row each: (entry name, transformers model class, its config class,
#: config keywords, input kind). Text models take ids and a padded attention mask; vision models a
#: 2x3x32x32 image. All give ``last_hidden_state``.
_MORE: list[tuple[str, str, str, dict[str, Any], str]] = [
    (
        "hf_distilbert",
        "DistilBertModel",
        "DistilBertConfig",
        {"dim": 16, "n_layers": 2, "n_heads": 2, "hidden_dim": 32},
        "text",
    ),
    ("hf_albert", "AlbertModel", "AlbertConfig", {**TINY, "embedding_size": 8}, "text"),
    ("hf_electra", "ElectraModel", "ElectraConfig", {**TINY, "embedding_size": 8}, "text"),
    (
        "hf_gpt_neo",
        "GPTNeoModel",
        "GPTNeoConfig",
        {
            "hidden_size": 16,
            "num_layers": 2,
            "num_heads": 2,
            "attention_types": [[["global", "local"], 1]],
            "window_size": 4,
            "use_cache": False,
        },
        "text",
    ),
    (
        "hf_opt",
        "OPTModel",
        "OPTConfig",
        {
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "ffn_dim": 32,
            "word_embed_proj_dim": 16,
            "use_cache": False,
        },
        "text",
    ),
    ("hf_mistral", "MistralModel", "MistralConfig", {**TINY, "num_key_value_heads": 1, "use_cache": False}, "text"),
    ("hf_qwen2", "Qwen2Model", "Qwen2Config", {**TINY, "num_key_value_heads": 1, "use_cache": False}, "text"),
    ("hf_phi", "PhiModel", "PhiConfig", {**TINY, "use_cache": False}, "text"),
    ("hf_deit", "DeiTModel", "DeiTConfig", {**TINY, "image_size": 32, "patch_size": 8}, "image"),
    (
        "hf_swin",
        "SwinModel",
        "SwinConfig",
        {"image_size": 32, "patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4},
        "image",
    ),
    (
        "hf_convnext",
        "ConvNextModel",
        "ConvNextConfig",
        {"hidden_sizes": [8, 16], "depths": [1, 1], "num_stages": 2},
        "image",
    ),
    (
        "hf_resnet",
        "ResNetModel",
        "ResNetConfig",
        {"hidden_sizes": [8, 16], "depths": [1, 1], "embedding_size": 8},
        "image",
    ),
    (
        "hf_mobilevit",
        "MobileViTModel",
        "MobileViTConfig",
        {"image_size": 32, "hidden_sizes": [16, 24, 32], "neck_hidden_sizes": [8, 8, 16, 16, 24, 32, 64]},
        "image",
    ),
    (
        "hf_segformer",
        "SegformerModel",
        "SegformerConfig",
        {
            "num_encoder_blocks": 2,
            "depths": [1, 1],
            "sr_ratios": [2, 1],
            "hidden_sizes": [8, 16],
            "num_attention_heads": [1, 2],
            "patch_sizes": [7, 3],
            "strides": [4, 2],
            "mlp_ratios": [2, 2],
        },
        "image",
    ),
]


def _from_table(model_class: str, config_class: str, keywords: dict[str, Any], kind: str) -> Callable[[], Any]:
    def build() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        import transformers

        if kind == "text":
            config = getattr(transformers, config_class)(vocab_size=64, max_position_embeddings=32, **keywords)
            names, inputs = ("input_ids", "attention_mask"), _text(64)
        else:
            config = getattr(transformers, config_class)(**keywords)
            names, inputs = ("pixel_values",), (torch.randn(2, 3, 32, 32),)
        config._attn_implementation = "eager"
        return Wrapped(getattr(transformers, model_class)(config), names, _hidden), inputs

    return build


def _hide_broken_torchvision() -> None:
    """transformers imports torchvision when it is installed; one built for another torch fails at import
    ("operator torchvision::nms does not exist") and takes every model class with it. None of these
    models needs it, so an unusable torchvision is treated as absent."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        sys.modules["torchvision"] = None  # type: ignore[assignment]


def entries() -> list[Entry]:
    _hide_broken_torchvision()
    try:
        import transformers  # noqa: F401
    except ImportError:
        return []
    return [
        Entry("hf_bert", "transformers", _bert),
        Entry("hf_roberta_classifier", "transformers", _roberta),
        Entry("hf_gpt2", "transformers", _gpt2),
        Entry("hf_llama", "transformers", _llama, fast=True),
        Entry("hf_t5_encoder", "transformers", _t5_encoder),
        Entry("hf_vit", "transformers", _vit),
        Entry("hf_vit_base", "transformers", _vit_base),
        Entry("hf_whisper_encoder", "transformers", _whisper_encoder),
        *(Entry(name, "transformers", _from_table(*row)) for name, *row in _MORE),
    ]
