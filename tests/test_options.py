"""Typed options: unknown names are refused with the nearest valid one, values are checked against
their declared types (build options: ``BuildOptions``; pass options: the pass's signature), before
any slow step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import graphopt
from graphopt.errors import InputError
from graphopt.options import BuildOptions, OptionText, coerce
from graphopt.pass_api import PassResult, get_pass, register_pass, unregister_pass
from graphopt.pass_manager import check_pass_options, resolve_pipeline


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("2", int, 2),
        ("0.5", float, 0.5),
        ("3", float, 3.0),
        ("true", bool, True),
        ("Off", bool, False),
        ("none", int | None, None),
        ("+avx2,-avx512f", str | list[str] | None, ["+avx2", "-avx512f"]),
        ("['fc1', 'fc2']", tuple[str, ...], ("fc1", "fc2")),
        ("db.json", str | Path | None, Path("db.json")),
        ("[1, 2]", object, [1, 2]),
    ],
)
def test_command_line_text_is_read_for_the_declared_type(text, annotation, expected):
    assert coerce(OptionText(text), annotation, "x") == expected


@pytest.mark.parametrize(
    ("value", "annotation", "message"),
    [
        (OptionText("abc"), int, "x=abc: expected an integer"),
        (OptionText("maybe"), bool, "x=maybe: expected true or false"),
        ("2", int, "x='2': expected an integer"),  # from Python, a string is not an int
        (1, bool, "x=1: expected true or false"),
        (True, float, "x=True: expected a number"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_option_value_and_type(value, annotation, message):
    with pytest.raises(InputError) as raised:
        coerce(value, annotation, "x")
    assert str(raised.value) == message


def test_build_options_refuse_unknown_names_with_the_nearest_one():
    assert BuildOptions.from_dict({"tune": True, "tune_trials": 8}).to_dict() == {
        "dynamic_batch": False,
        "tune": True,
        "tune_trials": 8,
        "compress": False,
        "pack_library": False,
    }
    with pytest.raises(InputError, match=r"^unknown option 'tune_trails' \(did you mean 'tune_trials'\?\)$"):
        BuildOptions.from_dict({"tune_trails": 5})
    with pytest.raises(InputError, match="option num_cores=0: expected a positive integer"):
        BuildOptions.from_dict({"num_cores": 0})
    extra = BuildOptions.from_dict({"sram_kb": OptionText("512")}, extra_types={"sram_kb": int})
    assert extra.to_dict()["sram_kb"] == 512


def test_graphopt_compile_refuses_a_typo_before_capture():
    not_a_model = object()  # capture would refuse it: the option check answers first
    with pytest.raises(InputError, match=r"unknown option 'tune_trails' \(did you mean 'tune_trials'\?\)"):
        graphopt.compile(not_a_model, torch.zeros(1, 4), tune_trails=5)
    with pytest.raises(InputError, match=r"unknown option 'verfy' \(did you mean 'verify'\?\)"):
        graphopt.compile(not_a_model, torch.zeros(1, 4), verfy=True)
    with pytest.raises(InputError, match="option num_cores='abc': expected an integer"):
        graphopt.compile(not_a_model, torch.zeros(1, 4), num_cores="abc")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target-option", "num_cores=abc"], "--target-option num_cores=abc: expected an integer"),
        (["--target-option", "num_core=2"], "unknown --target-option 'num_core' (did you mean 'num_cores'?)"),
        (
            ["--pass-option", "fold_constants.max_bytes=abc"],
            "pass option fold_constants.max_bytes=abc: expected an integer",
        ),
        (
            ["--pass-option", "eliminate_dead_weights.prune_zero_channels=maybe"],
            "pass option eliminate_dead_weights.prune_zero_channels=maybe: expected true or false",
        ),
        (
            ["--pass-option", "fold_constants.max_byte=1"],
            "pass 'fold_constants' has no option 'max_byte' (did you mean 'max_bytes'?)",
        ),
        (
            ["--pass-option", "fold_constant.max_bytes=1"],
            "which is not in the pipeline (did you mean 'fold_constants'?)",
        ),
    ],
)
def test_cli_options_are_checked_before_the_model_is_loaded(cli, never_loaded, flags, message):
    status, _, err = cli("compile", never_loaded, "--input-shape", "1x8", *flags)
    assert status == 2 and message in err and err.count("\n") == 1, err


def test_pass_options_are_typed_from_the_signature_and_reach_the_pass():
    seen = {}

    @register_pass("t_typed_options")
    def typed(graph, *, limit: int = 4, scale: float = 1.0, enabled: bool = True, names: tuple[str, ...] = ()):
        """Record the options it was given."""
        seen.update(limit=limit, scale=scale, enabled=enabled, names=names)
        return PassResult(graph, changed=False)

    try:
        info = get_pass("t_typed_options")
        assert info.option_types == {"limit": int, "scale": float, "enabled": bool, "names": tuple[str, ...]}
        given = {
            "limit": OptionText("7"),
            "scale": OptionText("2"),
            "enabled": OptionText("no"),
            "names": OptionText("a,b"),
        }
        pipeline = resolve_pipeline(["t_typed_options"], {})
        assert check_pass_options(pipeline, {"t_typed_options": given}) == {
            "t_typed_options": {"limit": 7, "scale": 2.0, "enabled": False, "names": ("a", "b")}
        }
        graph = graphopt.capture(nn.Linear(4, 2).eval(), torch.zeros(1, 4))
        graphopt.optimize(graph, ["t_typed_options"], options={"t_typed_options": given})
        assert seen == {"limit": 7, "scale": 2.0, "enabled": False, "names": ("a", "b")}
        with pytest.raises(InputError, match=r"pass option t_typed_options\.limit=2\.5: expected an integer"):
            graphopt.optimize(graph, ["t_typed_options"], options={"t_typed_options": {"limit": 2.5}})
    finally:
        unregister_pass("t_typed_options")
