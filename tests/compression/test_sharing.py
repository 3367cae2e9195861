"""share_weights and magnitude_prune on a small conv net: value counts, zeros, reports, bad options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import graphopt
from graphopt.compression.layers import is_compressed, weight_layers
from graphopt.errors import InputError


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2)
    return net.eval()


X = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def optimized(model: nn.Module) -> graphopt.Graph:
    """The model captured and optimized once (BN folded); the tests pass ``passes=None``."""
    graph, _ = graphopt.optimize(graphopt.capture(model, X), "O2")
    return graph


def _distinct(graph: graphopt.Graph) -> dict[str, int]:
    return {layer.name: len(np.unique(layer.tensor.detach().numpy())) for layer in weight_layers(graph)}


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_no_layer_has_more_than_two_to_the_bits_values(optimized: graphopt.Graph, bits: int) -> None:
    before = {k: v.clone() for k, v in optimized.module.state_dict().items()}
    shared, report = graphopt.share_weights(optimized, bits=bits, passes=None)
    assert set(_distinct(shared)) == {"conv.weight", "fc_weight_t"}  # BN folded into the conv first
    assert all(count <= 2**bits for count in _distinct(shared).values())
    assert [layer.distinct for layer in report.layers] == list(_distinct(shared).values())
    assert all(layer.bits == bits for layer in report.layers)
    assert all(torch.equal(before[k], v) for k, v in optimized.module.state_dict().items())  # input untouched
    assert is_compressed(shared)
    # relative output error on the example inputs: 256 values are nearly exact, 2 are not
    assert report.output_error < 0.01 if bits == 8 else report.output_error > 0.01


def test_pruned_zeros_stay_and_count_among_the_values(model: nn.Module) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, prune_report = graphopt.magnitude_prune(model, X, sparsity={"fc*": 0.75})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the user's model untouched
    assert [layer.name for layer in prune_report.layers] == ["fc_weight_t"]
    assert prune_report.layers[0].zeros == round(0.75 * 288 * 5)
    shared, report = graphopt.share_weights(pruned, bits=2, passes=None)
    fc = next(layer for layer in weight_layers(shared) if layer.name == "fc_weight_t").tensor
    assert torch.equal(fc == 0, pruned.module.fc_weight_t == 0)
    fc_report = next(layer for layer in report.layers if layer.name == "fc_weight_t")
    assert len(torch.unique(fc)) <= 4 and fc_report.zeros == prune_report.layers[0].zeros


def test_per_channel_gives_each_output_channel_its_own_values(optimized: graphopt.Graph) -> None:
    shared, report = graphopt.share_weights(optimized, bits=1, per_channel=True, layers=["conv.weight"], passes=None)
    weight = shared.module.conv.weight.detach()
    assert all(len(torch.unique(channel)) <= 2 for channel in weight)
    assert len(torch.unique(weight)) > 2 and report.layers[0].distinct <= 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bits": 0}, "bits must be an integer from 1 to 8, got 0"),
        ({"bits": 9}, "bits must be an integer from 1 to 8, got 9"),
        ({"bits": {"conv.weight": 12}}, "got 12"),
        ({"bits": {"nope": 4}}, "bits given for 'nope', which matches no weight tensor"),
        ({"layers": ["fc1"]}, "no weight tensor matches 'fc1'"),
    ],
)
def test_bad_options_are_one_line_errors(optimized: graphopt.Graph, options: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        graphopt.share_weights(optimized, passes=None, **options)
    assert "\n" not in str(error.value)


def test_bad_sparsity_is_a_one_line_error(optimized: graphopt.Graph) -> None:
    with pytest.raises(InputError, match=r"sparsity must be a number in \[0, 1\), got 1.5"):
        graphopt.magnitude_prune(optimized, sparsity=1.5, passes=None)


def test_channel_scale_shares_one_codebook_over_scaled_channels(optimized: graphopt.Graph) -> None:
    from graphopt.compression.layers import HALF_TENSORS, SCALED_CODEBOOKS

    shared, report = graphopt.share_weights(optimized, bits=2, channel_scale=True, half_biases=True, passes=None)
    factors = shared.module.meta[SCALED_CODEBOOKS]
    assert set(factors) == {"conv.weight", "fc_weight_t"}
    for layer in weight_layers(shared):
        hint = factors[layer.name]
        assert len(hint.centroids) <= 4 and hint.values().tobytes() == layer.tensor.detach().numpy().tobytes()
        assert hint.scales.shape == (layer.tensor.shape[layer.channel_axis],)
        for values in (hint.scales, hint.centroids):  # float16 values: half the bytes, an exact product
            assert np.array_equal(values.astype(np.float16).astype(np.float32), values)
    assert [layer.distinct for layer in report.layers] == [len(factors[n].centroids) for n in factors]
    biases = {"conv.bias", "fc_bias"} & set(shared.module.meta[HALF_TENSORS])
    assert biases and all(
        torch.equal(t, t.half().float()) for n, t in shared.module.state_dict().items() if n in biases
    )
    assert not optimized.module.meta.get(SCALED_CODEBOOKS)  # the graph given is untouched
    # channel scales follow the per-channel ranges BN folding leaves: smaller error than one plain codebook
    _, plain = graphopt.share_weights(optimized, bits=2, passes=None)
    assert report.output_error < plain.output_error


def test_fine_tune_trains_scaled_centroids_and_keeps_the_factors_exact(optimized: graphopt.Graph) -> None:
    from graphopt.compression.layers import HALF_TENSORS, SCALED_CODEBOOKS

    shared, _ = graphopt.share_weights(optimized, bits=2, channel_scale=True, half_biases=True, passes=None)
    data = (torch.randn(32, 3, 6, 6, generator=torch.Generator().manual_seed(2)), torch.arange(32) % 5)
    tuned, report = graphopt.fine_tune(shared, data, epochs=2, lr=1e-2)
    before, after = shared.module.meta[SCALED_CODEBOOKS], tuned.module.meta[SCALED_CODEBOOKS]
    assert set(report.codebook_layers) == {"conv.weight", "fc_weight_t"}
    for layer in weight_layers(tuned):
        hint = after[layer.name]
        assert not np.array_equal(hint.centroids, before[layer.name].centroids)  # trained
        assert np.array_equal(hint.labels, before[layer.name].labels)  # same assignment, same scales
        assert np.array_equal(hint.scales, before[layer.name].scales)
        assert np.array_equal(hint.centroids.astype(np.float16).astype(np.float32), hint.centroids)
        assert hint.values().tobytes() == layer.tensor.detach().numpy().tobytes()
    state = tuned.module.state_dict()
    halves = tuned.module.meta[HALF_TENSORS]
    assert any(not torch.equal(state[n], shared.module.state_dict()[n]) for n in halves)  # biases trained
    assert all(torch.equal(state[n], state[n].half().float()) for n in halves)  # and still float16 values


def test_per_channel_and_channel_scale_together_are_refused(optimized: graphopt.Graph) -> None:
    with pytest.raises(InputError, match="per_channel and channel_scale exclude each other"):
        graphopt.share_weights(optimized, bits=4, per_channel=True, channel_scale=True, passes=None)


def _fidelity(reference: graphopt.Graph):
    """A score (higher is better): minus the largest output difference from ``reference``, in percent."""
    inputs = torch.randn(16, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    want = reference(inputs)

    def score(graph: graphopt.Graph) -> float:
        return -100 * float((graph(inputs) - want).abs().max() / want.abs().max())

    return score


def test_choose_bits_gives_each_layer_the_fewest_bits_within_the_drop(optimized: graphopt.Graph) -> None:
    score = _fidelity(optimized)
    bits, sweep = graphopt.choose_bits(optimized, evaluate=score, candidates=(2, 4, 5, 6, 8), max_drop=3.0, passes=None)
    assert set(bits) == {"conv.weight", "fc_weight_t"} and sweep.baseline == 0.0
    for name, chosen in bits.items():
        tried = sweep.scores[name]
        assert max(tried) == chosen and tried[chosen] >= -3.0  # the sweep stops at the first that fits
        assert all(tried[b] < -3.0 for b in tried if b < chosen)  # every narrower width lost more
        alone, _ = graphopt.share_weights(optimized, bits=chosen, layers=[name], passes=None)
        assert score(alone) == tried[chosen]
    assert bits == {"conv.weight": 6, "fc_weight_t": 5}  # the two layers differ in what they tolerate
    _, report = graphopt.share_weights(optimized, bits=bits, passes=None)
    assert {layer.name: layer.bits for layer in report.layers} == bits


def test_choose_bits_refuses_a_failing_evaluate_in_one_line(optimized: graphopt.Graph) -> None:
    def broken(graph: graphopt.Graph) -> float:
        raise ValueError("no labels here")

    with pytest.raises(InputError, match="evaluate raised ValueError: no labels here"):
        graphopt.choose_bits(optimized, evaluate=broken, passes=None)
    with pytest.raises(InputError, match="bits must be an integer from 1 to 8, got 9"):
        graphopt.choose_bits(optimized, evaluate=_fidelity(optimized), candidates=(4, 9), passes=None)
