"""model_loading: what a user types on the command line becomes a model and example inputs, or one
InputError line that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from graphopt.errors import InputError
from graphopt.model_loading import example_inputs, inputs_like_program, load_model, parse_dtype, parse_shape

REPO = Path(__file__).resolve().parents[1]


def test_a_file_spec_and_a_module_spec_load_the_same_model_in_eval_mode() -> None:
    by_path = load_model(f"{REPO}/samples/mnist_mlp.py:mnist_mlp")
    by_module = load_model("samples.mnist_mlp:mnist_mlp")
    assert isinstance(by_path, nn.Module) and isinstance(by_module, nn.Module)
    assert not by_path.training and not by_module.training
    assert type(by_path).__name__ == type(by_module).__name__


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("samples/mnist_mlp.py", "should read path/to/file.py:ClassOrFactory"),
        ("samples/mnist_mlp.py:nope", "has no 'nope' \\(models and factories there: .*mnist_mlp"),
        ("weights.pth", "holds weights, not a model"),
        ("missing_dir/model.py:Net", "missing_dir/model.py"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        load_model(spec)
    assert "\n" not in str(caught.value)


def test_a_saved_program_loads_with_inputs_of_its_recorded_shapes(tmp_path: Path) -> None:
    program = torch.export.export(nn.Linear(5, 3).eval(), (torch.randn(2, 5),))
    torch.export.save(program, tmp_path / "linear.pt2")
    loaded = load_model(str(tmp_path / "linear.pt2"))
    assert isinstance(loaded, torch.export.ExportedProgram)
    (x,) = inputs_like_program(loaded)
    assert x.shape == (2, 5) and x.dtype == torch.float32


def test_shapes_and_dtypes_parse_or_say_what_is_wrong() -> None:
    assert parse_shape("1x3x224x224") == parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_dtype("half") == torch.float16 and parse_dtype("torch.int64") == torch.int64
    with pytest.raises(InputError, match="bad input shape '1xa'"):
        parse_shape("1xa")
    with pytest.raises(InputError, match="unknown input dtype 'float8'"):
        parse_dtype("float8")


def test_example_inputs_are_seeded_and_typed_per_input() -> None:
    ids, mask = example_inputs(["2x7", "2x7"], ["int64", "bool"])
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool
    assert int(ids.min()) >= 0 and int(ids.max()) < 10  # valid indices for any embedding
    assert torch.equal(example_inputs(["3x4"])[0], example_inputs(["3x4"])[0])
    with pytest.raises(InputError, match="2 --input-dtype values for 3 inputs"):
        example_inputs(["1", "1", "1"], ["float32", "int64"])
