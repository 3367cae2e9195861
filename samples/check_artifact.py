"""Check a compiled MnistMLP artifact on the 359 held-out digits, against the same model in PyTorch eager.

    python -m samples.check_artifact out/mnist_mlp

Prints both accuracies and the largest logit difference (relative to the largest eager logit).
Exits with status 1 if the artifact's predictions or logits drift from eager: predictions must
agree on every digit, logits within 1e-4 relative (float32 sums reordered by TVM move logits by a
few ulps; 1e-4 still catches any wrong kernel). Needs an artifact built with ``--dynamic-batch``
or for batch 359.
"""

from __future__ import annotations

import argparse

import torch

import graphopt
from graphopt.numerics import relative_error
from samples.digits import load_digits_flat
from samples.mnist_mlp import mnist_mlp

TOLERANCE = 1e-4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", help="directory written by `graphopt compile ... -o DIR`")
    args = parser.parse_args(argv)
    x, y = load_digits_flat("test")
    with torch.no_grad():
        eager = mnist_mlp()(x).numpy()
    compiled = graphopt.load(args.artifact)(x.numpy())
    error = relative_error(eager, compiled)
    eager_accuracy = (eager.argmax(1) == y.numpy()).mean()
    compiled_accuracy = (compiled.argmax(1) == y.numpy()).mean()
    agree = (eager.argmax(1) == compiled.argmax(1)).mean()
    print(f"held-out digits: {len(y)}")
    print(f"PyTorch eager accuracy:   {eager_accuracy:.2%}")
    print(f"graphopt artifact accuracy: {compiled_accuracy:.2%} (same prediction on {agree:.2%} of digits)")
    print(f"max logit difference: {error:.2e} relative to the largest eager logit (tolerance {TOLERANCE:.0e})")
    ok = agree == 1.0 and error <= TOLERANCE
    print("OK: the artifact matches PyTorch eager" if ok else "FAILED: the artifact drifts from PyTorch eager")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
