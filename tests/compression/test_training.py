"""fine_tune keeps zeros and codebooks; distill trains a copy of the student; bad data is one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graphopt
from graphopt.compression.augment import random_shift
from graphopt.compression.layers import weight_layers
from graphopt.errors import InputError

GENERATOR = torch.Generator().manual_seed(0)
X = torch.randn(256, 12, generator=GENERATOR)
Y = (X[:, :4].sum(dim=1) > 0).long() + (X[:, 4] > 1).long()  # 3 classes a small MLP can learn


def mlp(hidden: int = 32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, 3)).eval()


def accuracy(model: nn.Module) -> float:
    with torch.no_grad():
        return float((model(X).argmax(1) == Y).float().mean())


def test_fine_tune_keeps_zeros_and_codebooks_while_the_loss_falls() -> None:
    pruned, _ = graphopt.magnitude_prune(mlp(128), X[:1], sparsity={"0*": 0.8})  # 307 values left: dense
    shared, _ = graphopt.share_weights(pruned, bits=3, layers=["2*"], passes=None)
    tuned, report = graphopt.fine_tune(shared, (X, Y), epochs=6, lr=3e-3)
    assert report.losses[-1] < report.losses[0]
    assert report.masked_layers == ["0_weight_t"] and report.codebook_layers == ["2_weight_t"]
    before = {layer.name: layer.tensor for layer in weight_layers(shared)}
    after = {layer.name: layer.tensor for layer in weight_layers(tuned)}
    assert torch.equal(after["0_weight_t"] == 0, before["0_weight_t"] == 0)
    assert not torch.equal(after["0_weight_t"], before["0_weight_t"])  # the rest did train
    assert len(torch.unique(after["2_weight_t"])) <= 8
    # the same partition: weights that shared a centroid before share one after (centroids moved)
    old = torch.unique(before["2_weight_t"], return_inverse=True)[1].flatten()
    new = torch.unique(after["2_weight_t"], return_inverse=True)[1].flatten()
    assert len(torch.unique(old * 256 + new)) == len(torch.unique(old)) == len(torch.unique(new))
    assert not torch.equal(after["2_weight_t"], before["2_weight_t"])


def test_distill_trains_a_copy_and_leaves_the_teacher_alone() -> None:
    teacher, student = mlp(64, seed=1), mlp(8, seed=2)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_state = {k: v.clone() for k, v in student.state_dict().items()}
    trained, report = graphopt.distill(teacher, student, (X, Y), epochs=4, eval=accuracy, batch_size=32)
    assert all(torch.equal(teacher_state[k], v) for k, v in teacher.state_dict().items())
    assert all(torch.equal(student_state[k], v) for k, v in student.state_dict().items())
    assert trained is not student and len(report.student_scores) == 4
    assert report.student_score == max(report.student_scores) == accuracy(trained)
    assert report.losses[-1] < report.losses[0] and report.teacher_parameters > report.student_parameters


def test_a_student_of_the_wrong_output_shape_is_refused() -> None:
    student = nn.Sequential(nn.Linear(12, 5))
    with pytest.raises(InputError, match=r"student's outputs have shape \(2, 5\), the teacher's \(2, 3\)") as error:
        graphopt.distill(mlp(), student, (X, Y), epochs=1)
    assert "\n" not in str(error.value)


def _raises() -> list:
    raise RuntimeError("the data server is down\nmore detail")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_raises, "the train_data function raised RuntimeError: the data server is down$"),
        ([(X[:8], Y[:4])], r"inputs of shape \(8, 12\) and labels of shape \(4,\)"),
        ([X[:8]], "batch 0 is a Tensor, expected"),
        ((X, Y[:10]), "train_data has 256 inputs and 10 labels"),
        (iter([(X, Y)]), "one-shot iterator"),
    ],
)
def test_bad_train_data_is_a_one_line_error(data: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        graphopt.distill(mlp(), mlp(8), data, epochs=2)


def test_random_shift_moves_each_image_by_at_most_its_pixels_and_repeats_the_edges() -> None:
    images = torch.full((64, 1, 9, 9), -0.5)  # a normalized background
    images[:, 0, 4, 4] = 1.0  # one bright pixel in the middle
    torch.manual_seed(0)
    shifted = random_shift(2)(images)
    assert shifted.shape == images.shape and shifted.min() == -0.5  # no zero frame drawn in
    rows, columns = (shifted[:, 0] == 1.0).nonzero()[:, 1:].T
    assert rows.sub(4).abs().max() == 2 and columns.sub(4).abs().max() == 2  # up to 2 px, every direction
    assert len(set(zip(rows.tolist(), columns.tolist(), strict=True))) > 10
    assert torch.equal(random_shift(0)(images), images)


def test_distill_with_augmentation_shows_both_arms_the_same_inputs() -> None:
    seen: list[torch.Tensor] = []

    def recording_shift(images: torch.Tensor) -> torch.Tensor:
        seen.append(images + torch.randn(images.shape))
        return seen[-1]

    for alpha in (0.9, 0.0):  # distilled, then labels only: the same seeded noise on the same batches
        graphopt.distill(mlp(64, seed=1), mlp(8, seed=2), (X, Y), epochs=2, alpha=alpha, augment=recording_shift)
    half = len(seen) // 2
    assert half == 2 * 4 and all(torch.equal(a, b) for a, b in zip(seen[:half], seen[half:], strict=True))


def test_the_cosine_schedule_anneals_the_rate_and_constant_is_the_default() -> None:
    cosine, _ = graphopt.distill(mlp(64, seed=1), mlp(8, seed=2), (X, Y), epochs=3, schedule="cosine")
    constant, _ = graphopt.distill(mlp(64, seed=1), mlp(8, seed=2), (X, Y), epochs=3)
    assert not torch.equal(cosine[0].weight, constant[0].weight)
    with pytest.raises(InputError, match="schedule must be one of constant, cosine, got 'linear'"):
        graphopt.distill(mlp(), mlp(8), (X, Y), epochs=1, schedule="linear")


def test_an_augmentation_that_changes_the_shape_is_a_one_line_error() -> None:
    with pytest.raises(InputError, match=r"augment turned inputs of shape \(64, 12\) into \(64, 6\)"):
        graphopt.distill(mlp(), mlp(8), (X, Y), epochs=1, augment=lambda x: x[:, :6])
