"""The signal (DFT, STFT, MelWeightMatrix), scatter (TensorScatter, MaxUnpool, TfIdfVectorizer),
ai.onnx.ml and training-domain converters, run through graphopt's ONNX backend on the CPU target
(``graphopt.compile(..., target="cpu")``, the built artifact run) and checked against the onnx
package's node cases (their own rtol/atol) and the onnx reference evaluator.

Tolerances beyond the cases' own: the CPU target computes float32 transforms as float32 matmuls, so
a result differs from the exact one by float32 rounding of its sums (stated where used); float64
and integer paths must match to float64 rounding."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from benchmarks.onnx_conformance import as_array, node_cases, run_cpu
from graphopt.errors import UnsupportedOnnxError
from graphopt.onnx.backend import GraphoptRep
from graphopt.onnx.io import import_onnx

OPS = {
    *("DFT", "STFT", "MelWeightMatrix", "TensorScatter", "MaxUnpool", "TfIdfVectorizer"),
    *("ArrayFeatureExtractor", "Binarizer", "TreeEnsemble", "Adagrad", "Adam", "Momentum"),
}
#: The expected outputs hold float32 FFT rounding (1.9e-7 where the exact value is 0) above the cases'
#: atol of 1e-7: no other order of float32 arithmetic meets it (ONNX Runtime fails them too).
#: ``test_dft_inverse_is_exact_to_float32_rounding`` checks these inputs against the exact transform.
FLOAT32_NOISE = {"test_dft_inverse", "test_dft_inverse_opset19"}
CASES = sorted(case.name for case in node_cases(OPS) if case.name not in FLOAT32_NOISE)


@pytest.fixture(scope="module")
def cases():
    return {case.name: case for case in node_cases(OPS)}


@pytest.mark.parametrize("name", CASES)
def test_node_case_passes_on_the_cpu_target(cases, name):
    outcome = run_cpu(cases[name])
    assert outcome == "pass|", outcome


def cpu(model, arrays):
    outputs = GraphoptRep(model, check=False).run([np.asarray(a) for a in arrays])
    return [np.asarray(o) for o in outputs]


def reference(model, arrays):
    names = [value.name for value in model.graph.input]
    return ReferenceEvaluator(model).run(None, dict(zip(names, arrays, strict=True)))


def test_dft_inverse_is_exact_to_float32_rounding(cases):
    inputs, _ = cases["test_dft_inverse"].data_sets[0]
    x, axis = as_array(inputs[0]), as_array(inputs[1])
    (got,) = cpu(cases["test_dft_inverse"].model, [x, axis])
    exact = np.fft.ifft(x[..., 0].astype(np.float64) + 1j * x[..., 1], axis=int(axis))
    # 10-term float32 sums of values up to 90: at most 10 * 90 * 2**-24 ~ 5e-5 from the exact transform
    np.testing.assert_allclose(got[..., 0], exact.real, rtol=0, atol=5e-5)
    np.testing.assert_allclose(got[..., 1], exact.imag, rtol=0, atol=5e-5)


def dft_model(element_type, shape, out_shape, **attributes):
    node = helper.make_node("DFT", ["x", "length", "axis"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "dft",
        [
            helper.make_tensor_value_info("x", element_type, shape),
            helper.make_tensor_value_info("length", TensorProto.INT64, []),
            helper.make_tensor_value_info("axis", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", element_type, out_shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.mark.parametrize(("length", "bins"), [(12, 7), (20, 11)])
def test_float64_rfft_pads_or_truncates_to_dft_length_in_float64(length, bins):
    x = np.random.default_rng(1).standard_normal((2, 16, 1))
    model = dft_model(TensorProto.DOUBLE, [2, 16, 1], [2, bins, 2], onesided=1)
    (got,) = cpu(model, [x, np.array(length), np.array(1)])
    exact = np.fft.rfft(x[..., 0], n=length, axis=1)
    assert got.dtype == np.float64  # TVM's matmul would give float32: the float64 path sums products
    np.testing.assert_allclose(got[..., 0], exact.real, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[..., 1], exact.imag, rtol=0, atol=1e-12)


def test_complex_irfft_with_odd_length_matches_numpy():
    x = np.random.default_rng(2).standard_normal((1, 5, 3, 2)).astype(np.float32)
    model = dft_model(TensorProto.FLOAT, [1, 5, 3, 2], [1, 9, 3, 1], onesided=1, inverse=1)
    (got,) = cpu(model, [x, np.array(9), np.array(1)])
    exact = np.fft.irfft(x[..., 0].astype(np.float64) + 1j * x[..., 1], n=9, axis=1)
    np.testing.assert_allclose(got[..., 0], exact, rtol=0, atol=1e-5)  # float32 sums of 5 terms ~1


def tree_ensemble(aggregate, **extra):
    """Two trees over 2 features and 2 targets: tree 0 tests x0 <= 0.5 then x1 > -0.2 (NaN goes true),
    tree 1 is x1 in {1, 2} (a BRANCH_MEMBER node); leaves 0-4."""
    node = helper.make_node(
        "TreeEnsemble",
        ["X"],
        ["Y"],
        domain="ai.onnx.ml",
        n_targets=2,
        aggregate_function=aggregate,
        tree_roots=[0, 2],
        nodes_featureids=[0, 1, 1],
        nodes_modes=numpy_helper.from_array(np.array([0, 3, 6], dtype=np.uint8), "nodes_modes"),
        nodes_splits=numpy_helper.from_array(np.array([0.5, -0.2, 0.0], dtype=np.float32), "nodes_splits"),
        nodes_truenodeids=[1, 0, 3],
        nodes_trueleafs=[0, 1, 1],
        nodes_falsenodeids=[2, 1, 4],
        nodes_falseleafs=[1, 1, 1],
        nodes_missing_value_tracks_true=[0, 1, 0],
        membership_values=numpy_helper.from_array(np.array([1.0, 2.0, np.nan], dtype=np.float32), "membership_values"),
        leaf_targetids=[0, 1, 1, 0, 1],
        leaf_weights=numpy_helper.from_array(np.array([1.5, -2.0, 4.0, 0.25, 3.0], dtype=np.float32), "w"),
        **extra,
    )
    graph = helper.make_graph(
        [node],
        "trees",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [6, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [6, 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 5)])


TREE_INPUT = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 2.0], [1.0, 5.0], [0.2, np.nan], [0.7, 0.0]], dtype=np.float32)


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3], ids=["average", "sum", "min", "max"])
def test_tree_ensemble_aggregates_as_the_reference(aggregate):
    model = tree_ensemble(aggregate)
    (got,) = cpu(model, [TREE_INPUT])
    (expected,) = reference(model, [TREE_INPUT])
    np.testing.assert_array_equal(got, expected)  # sums of at most two float32 weights, in float64


def test_unsupported_attribute_is_one_line_naming_the_node():
    model = tree_ensemble(1, post_transform=1)
    model.graph.node[0].name = "forest"
    with pytest.raises(UnsupportedOnnxError) as error:
        import_onnx(model)
    message = str(error.value)
    assert "\n" not in message and "'forest'" in message and "post_transform 1" in message


@pytest.mark.parametrize("mode", ["IDF", "TFIDF"])
def test_tfidf_weighted_modes_match_the_reference(mode):
    node = helper.make_node(
        "TfIdfVectorizer",
        ["X"],
        ["Y"],
        mode=mode,
        min_gram_length=1,
        max_gram_length=3,
        max_skip_count=1,
        ngram_counts=[0, 3, 7],
        ngram_indexes=[4, 0, 2, 1, 5, 3, 6],
        pool_int64s=[2, 3, 5, 2, 3, 5, 4, 2, 3, 5],
        weights=[0.5, 1.0, 2.0, 0.25, 3.0, 1.5, 0.75],
    )
    graph = helper.make_graph(
        [node],
        "tfidf",
        [helper.make_tensor_value_info("X", TensorProto.INT64, [2, 8])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 7])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    x = np.array([[2, 3, 5, 2, 4, 3, 5, 2], [5, 5, 2, 3, 2, 3, 4, 2]], dtype=np.int64)
    (got,) = cpu(model, [x])
    (expected,) = reference(model, [x])
    np.testing.assert_array_equal(got, expected)  # counts times a weight: exact in float32


def training_model(op, inputs, outputs, **attributes):
    node = helper.make_node(op, inputs, outputs, domain="ai.onnx.preview.training", **attributes)
    scalars = {"R": TensorProto.FLOAT, "T": TensorProto.INT64}
    graph = helper.make_graph(
        [node],
        op,
        [
            helper.make_tensor_value_info(n, scalars.get(n, TensorProto.FLOAT), [] if n in scalars else [3])
            for n in inputs
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.preview.training", 1)])


@pytest.mark.parametrize("step", [0, 3])
@pytest.mark.parametrize(
    ("op", "inputs", "outputs", "attributes"),
    [
        ("Adam", ["R", "T", "X", "G", "V", "H"], ["X2", "V2", "H2"], {"alpha": 0.9, "beta": 0.99, "epsilon": 1e-3}),
        (
            "Momentum",
            ["R", "T", "X", "G", "V"],
            ["X2", "V2"],
            {"alpha": 0.9, "beta": 0.5, "mode": "nesterov", "norm_coefficient": 0.01},
        ),
        ("Adagrad", ["R", "T", "X", "G", "H"], ["X2", "H2"], {"decay_factor": 0.1}),  # epsilon: the default
    ],
)
def test_training_step_matches_the_reference_at_the_first_step_and_later(op, inputs, outputs, attributes, step):
    model = training_model(op, inputs, outputs, **attributes)
    rng = np.random.default_rng(step)
    arrays = [np.array(0.1, dtype=np.float32), np.array(step, dtype=np.int64)]
    arrays += [rng.random(3).astype(np.float32) for _ in inputs[2:]]
    got = cpu(model, arrays)
    expected = reference(model, arrays)
    for mine, theirs in zip(got, expected, strict=True):
        # both in float64, rounded to float32 once: a float32 ulp or two
        np.testing.assert_allclose(mine, theirs.astype(np.float32), rtol=1e-6, atol=1e-7)


def test_an_ml_op_without_a_converter_is_one_line_naming_it():
    node = helper.make_node("LinearRegressor", ["X"], ["Y"], domain="ai.onnx.ml", coefficients=[1.0, 2.0], name="lr")
    graph = helper.make_graph(
        [node],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 1)])
    with pytest.raises(UnsupportedOnnxError) as error:
        import_onnx(model)
    message = str(error.value)
    assert "\n" not in message and "ai.onnx.ml.LinearRegressor at node 'lr'" in message
