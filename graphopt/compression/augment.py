"""Input augmentations for ``distill(augment=...)`` and ``fine_tune``: new inputs with the same labels.

Distillation on a small training set gains most when the teacher is asked about inputs the student
has not memorized: Hinton et al. (2015) jittered MNIST by up to two pixels; Beyer et al. (2022,
"a good teacher is patient and consistent") show the teacher must see the very augmented input the
student sees, which is what ``distill`` does with the inputs ``augment`` returns.

>>> student, report = graphopt.distill(teacher, student, (x, y), augment=random_shift(2))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from graphopt.errors import InputError


def random_shift(pixels: int = 2) -> Callable[[torch.Tensor], torch.Tensor]:
    """Shift each ``N x C x H x W`` image by up to ``pixels`` in each direction, edges repeated.

    Edge repetition keeps the background value of normalized images (a zero fill would draw a frame
    in a value the data never has). Shifts are drawn from torch's default generator.
    """
    if not isinstance(pixels, int) or pixels < 0:
        raise InputError(f"random_shift takes a non-negative whole number of pixels, got {pixels!r}")

    def shift(images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise InputError(f"random_shift expects N x C x H x W images, got shape {tuple(images.shape)}")
        if pixels == 0:
            return images
        height, width = images.shape[2:]
        padded = F.pad(images, (pixels,) * 4, mode="replicate")
        offsets = torch.randint(0, 2 * pixels + 1, (len(images), 2))
        return torch.stack(
            [padded[i, :, top : top + height, left : left + width] for i, (top, left) in enumerate(offsets.tolist())]
        )

    return shift
