"""``graphopt distill TEACHER STUDENT --data module:fn [--eval module:fn] -o student.pt``

Train STUDENT (a smaller model, given like any MODEL: ``file.py:Class`` or ``module:factory``) on
TEACHER's softened outputs and the labels (``graphopt.distill``: Hinton's loss with ``--temperature``
and ``--alpha``, the weight of the soft term; ``--alpha 0`` trains on the labels alone, the baseline
a distilled student should beat). ``--data`` names a function returning the training data (``(inputs,
labels)`` tensors or batches of them). ``--eval`` names a function taking a model and returning its
accuracy in percent: the student is scored after every epoch and the best epoch's weights are kept
(``--patience`` stops early). ``--shift PX`` shows the student and the teacher image inputs shifted
up to PX pixels (``graphopt.compression.augment.random_shift``). Prints one table: teacher and student parameters, float32 size and
score. ``-o`` saves the trained student's ``state_dict`` (``torch.save``), to load into STUDENT's class.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphopt.commands import _common
from graphopt.commands.compress import _call, _score, load_function
from graphopt.errors import InputError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="train a smaller student model on a teacher's soft targets (knowledge distillation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("teacher", metavar="TEACHER", help="the trained model (as MODEL in `graphopt compile`)")
    parser.add_argument("student", metavar="STUDENT", help="the model to train, as TEACHER (its initial weights)")
    parser.add_argument("--data", required=True, metavar="MODULE:FN", help="FN() -> training data")
    parser.add_argument("--eval", metavar="MODULE:FN", help="FN(model) -> accuracy in percent; keeps the best epoch")
    parser.add_argument("--temperature", type=float, default=4.0, help="softmax temperature T (default 4)")
    parser.add_argument("--alpha", type=float, default=0.9, help="weight of the soft term, 0..1 (default 0.9)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--patience", type=int, metavar="N", help="with --eval: stop after N epochs without gain")
    parser.add_argument(
        "--shift", type=int, default=0, metavar="PX",
        help="shift each image input up to PX pixels every epoch (N x C x H x W; the teacher sees the same shifts)",
    )  # fmt: skip
    parser.add_argument(
        "--schedule",
        choices=["cosine", "constant"],
        default="constant",
        help="learning-rate schedule (default constant)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffling and initialization (default 0)")
    parser.add_argument("-o", "--out", metavar="FILE.pt", help="save the trained student's state_dict here")
    _common.add_json_argument(parser)


def _module(spec: str, role: str) -> Any:
    from torch import nn

    from graphopt.model_loading import load_model

    model = load_model(spec)
    if not isinstance(model, nn.Module):
        raise InputError(f"the {role} {spec} is a {type(model).__name__}; distillation trains an nn.Module")
    return model


def run(args: argparse.Namespace) -> int:
    import torch

    import graphopt
    from graphopt.compression.augment import random_shift

    if args.patience is not None and args.eval is None:
        raise InputError("--patience needs --eval (the score it watches)")
    if args.out and Path(args.out).is_dir():
        raise InputError(f"-o {args.out} is a directory; give a file for the student's state_dict")
    evaluate = load_function(args.eval, "--eval") if args.eval else None
    data = _call(load_function(args.data, "--data"), "--data")
    teacher, student = _module(args.teacher, "teacher"), _module(args.student, "student")
    score = None if evaluate is None else lambda model: _score(evaluate, model)
    torch.manual_seed(args.seed)
    with _common.status("distilling", quiet=args.json):
        trained, report = graphopt.distill(
            teacher, student, data, temperature=args.temperature, alpha=args.alpha, epochs=args.epochs,
            lr=args.lr, batch_size=args.batch_size, eval=score, patience=args.patience, seed=args.seed,
            augment=random_shift(args.shift) if args.shift else None, schedule=args.schedule,
        )  # fmt: skip
    if args.out:
        torch.save(trained.state_dict(), args.out)
    return _print(report, args)


def _print(report: Any, args: argparse.Namespace) -> int:
    from rich.table import Table

    from graphopt.report import human_bytes

    if args.json:
        _common.print_json({**report.to_dict(), "out": args.out})
        return 0
    table = Table(title=f"graphopt distill: T={report.temperature:g}, alpha={report.alpha:g}")
    for column in ("model", "parameters", "float32 size", "top-1"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = (
        (f"teacher {args.teacher}", report.teacher_parameters, report.teacher_score),
        (f"student {args.student}", report.student_parameters, report.student_score),
    )
    for name, parameters, top1 in rows:
        accuracy = "-" if top1 is None else f"{top1:.2f}%"
        table.add_row(name, f"{parameters:,}", human_bytes(4 * parameters), accuracy)
    _common.stdout.print(table)
    best = f", best epoch {report.best_epoch + 1}" if report.best_epoch is not None else ""
    losses = " ".join(f"{loss:.4f}" for loss in report.losses)
    _common.stdout.print(f"{len(report.losses)} epoch(s){best}; loss per epoch: {losses}")
    if args.out:
        _common.stdout.print(f"student weights: {args.out}")
    return 0
