"""Seventeen Hugging Face architectures nobody on the team wrote, built from tiny configs (random
weights, no download), compiled for the CPU target (O2) and compared with eager: max abs error of
the first output (``last_hidden_state``). A correctness sweep, not a timing.

    python benchmarks/transformers_zoo.py [NAME ...]
"""

import sys
import time
import warnings

import torch
import transformers as T

import graphopt

warnings.filterwarnings("ignore")
torch.manual_seed(0)
ids = torch.randint(0, 100, (1, 16))
img = torch.randn(1, 3, 64, 64)
small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=128)
cases = {
    "distilbert": lambda: (
        T.DistilBertModel(T.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=128, vocab_size=128)),
        (ids,),
    ),
    "roberta": lambda: (T.RobertaModel(T.RobertaConfig(**small, max_position_embeddings=64)), (ids,)),
    "albert": lambda: (T.AlbertModel(T.AlbertConfig(**small, embedding_size=32)), (ids,)),
    "electra": lambda: (T.ElectraModel(T.ElectraConfig(**small, embedding_size=32)), (ids,)),
    "t5enc": lambda: (
        T.T5EncoderModel(T.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=128)),
        (ids,),
    ),
    "gptneo": lambda: (
        T.GPTNeoModel(
            T.GPTNeoConfig(
                hidden_size=64,
                num_layers=2,
                num_heads=4,
                attention_types=[[["global", "local"], 1]],
                vocab_size=128,
                max_position_embeddings=64,
                use_cache=False,
            )
        ),
        (ids,),
    ),
    "opt": lambda: (
        T.OPTModel(
            T.OPTConfig(
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                ffn_dim=128,
                vocab_size=128,
                word_embed_proj_dim=64,
                max_position_embeddings=64,
                use_cache=False,
            )
        ),
        (ids,),
    ),
    "mistral": lambda: (T.MistralModel(T.MistralConfig(**small, num_key_value_heads=2, use_cache=False)), (ids,)),
    "qwen2": lambda: (T.Qwen2Model(T.Qwen2Config(**small, num_key_value_heads=2, use_cache=False)), (ids,)),
    "phi": lambda: (T.PhiModel(T.PhiConfig(**small, use_cache=False)), (ids,)),
    "vit": lambda: (
        T.ViTModel(T.ViTConfig(**{k: v for k, v in small.items() if k != "vocab_size"}, image_size=64, patch_size=16)),
        (img,),
    ),
    "deit": lambda: (
        T.DeiTModel(
            T.DeiTConfig(**{k: v for k, v in small.items() if k != "vocab_size"}, image_size=64, patch_size=16)
        ),
        (img,),
    ),
    "swin": lambda: (
        T.SwinModel(
            T.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4], window_size=4)
        ),
        (img,),
    ),
    "convnext": lambda: (T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)), (img,)),
    "resnet": lambda: (T.ResNetModel(T.ResNetConfig(hidden_sizes=[16, 32], depths=[1, 1], embedding_size=16)), (img,)),
    "mobilevit": lambda: (
        T.MobileViTModel(
            T.MobileViTConfig(image_size=64, hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64])
        ),
        (img,),
    ),
    "segformer": lambda: (
        T.SegformerModel(
            T.SegformerConfig(
                num_encoder_blocks=2,
                depths=[1, 1],
                sr_ratios=[2, 1],
                hidden_sizes=[16, 32],
                num_attention_heads=[1, 2],
                patch_sizes=[7, 3],
                strides=[4, 2],
                mlp_ratios=[2, 2],
            )
        ),
        (img,),
    ),
}
only = sys.argv[1:] or list(cases)
print("| model | result | max abs error | max abs output | seconds |\n|---|---|---:|---:|---:|")
for name in only:
    t = time.time()
    try:
        model, inputs = cases[name]()
        model.eval()
        art = graphopt.compile(model, inputs, target="cpu")
        with torch.no_grad():
            want = model(*inputs)
        want = want[0] if not isinstance(want, torch.Tensor) else want
        got = art(*[i.numpy() for i in inputs])
        got = got[0] if isinstance(got, (list, tuple)) else got
        err = float((torch.as_tensor(got) - want).abs().max())
        size = float(want.abs().max())
        print(f"| {name} | ok | {err:.1e} | {size:.2g} | {time.time() - t:.0f} |", flush=True)
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        print(f"| {name} | FAIL: {why} | - | - | {time.time() - t:.0f} |", flush=True)
