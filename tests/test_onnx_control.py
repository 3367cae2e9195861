"""RNN/GRU/LSTM, If/Loop/Scan, DeformConv and RoiAlign from ONNX (graphopt/onnx/recurrent.py,
control_flow.py, sampling.py), built for the CPU target.

The onnx package's node cases are checked against their reference outputs within the case's own
rtol/atol (the onnx runner's rule); hand-made models for what the node cases leave out (sequence_lens,
clip, layout 1, outer-scope reads, a run-time loop condition, reversed scans) are checked against ONNX
Runtime or the onnx reference evaluator within 1e-5: the same float32 arithmetic in another order
(unrolled matmuls, gathers instead of loops) differs by ~1e-6 relative, so 1e-5 flags any real error.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphopt
from benchmarks.onnx_conformance import node_cases, run_cpu, run_graphopt
from graphopt.errors import GraphoptError
from graphopt.onnx.backend import GraphoptRep

TOLERANCE = 1e-5
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
OPS = ("RNN", "GRU", "LSTM", "If", "Loop", "Scan", "DeformConv", "RoiAlign")

#: Built for the CPU target (a build each: a few seconds); every other case of these ops is imported below.
CPU_CASES = (
    "test_simple_rnn_batchwise",
    "test_rnn_seq_length",
    "test_gru_bidirectional",
    "test_lstm_with_peepholes",
    "test_lstm_batchwise",
    "test_if",
    "test_loop11",
    "test_scan9_multi_state",
    "test_scan_sum",
    "test_deform_conv_with_mask_bias",
    "test_deform_conv_with_multiple_offset_groups",
    "test_roialign_aligned_true",
    "test_roialign_mode_max",
    "test_affine_grid_3d_align_corners_expanded",
)

#: Node cases with sequences or optionals, which graphopt does not import (no tensor form), and test_loop11,
#: whose trip count is an input only the backend binds (it runs on the CPU target above).
NOT_CAPTURED = ("test_if_seq", "test_if_opt", "test_loop13_seq", "test_loop16_seq_none", "test_loop11")


@pytest.fixture(scope="module")
def cases():
    return {case.name: case for case in node_cases({*OPS, "AffineGrid"})}


@pytest.mark.parametrize("name", CPU_CASES)
def test_node_case_on_the_cpu_target(cases, name):
    outcome, _, why = run_cpu(cases[name]).partition("|")
    assert outcome == "pass", why


def test_every_tensor_node_case_imports_and_matches(cases):
    failed = {}
    for name, case in cases.items():
        if case.op in OPS and name not in NOT_CAPTURED:
            outcome, why = run_graphopt(case)
            if outcome != "pass":
                failed[name] = why
    assert not failed


def rng_floats(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def model_of(nodes, inputs, outputs, opset=22, initializers=()):
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def on_cpu(model, arrays):
    """The model's outputs from graphopt's ONNX backend on the CPU target."""
    outputs = GraphoptRep(model, check=False).run([torch.from_numpy(a) for a in arrays])
    return [o.numpy() if hasattr(o, "numpy") else np.asarray(o) for o in outputs]


def assert_close(got, expected):
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
        np.testing.assert_allclose(mine, theirs, rtol=TOLERANCE, atol=TOLERANCE)


def onnxruntime_outputs(model, arrays):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: a for i, a in zip(session.get_inputs(), arrays, strict=True)})


# -- recurrent -----------------------------------------------------------------------------------


def recurrent_model(op, direction, hidden, steps, batch, features, *, layout=0, lengths=True, **attributes):
    directions = 2 if direction == "bidirectional" else 1
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    weights = [
        numpy_helper.from_array(rng_floats(directions, gates * hidden, features, seed=1), "W"),
        numpy_helper.from_array(rng_floats(directions, gates * hidden, hidden, seed=2), "R"),
        numpy_helper.from_array(rng_floats(directions, 2 * gates * hidden, seed=3), "B"),
    ]
    x_shape = [batch, steps, features] if layout else [steps, batch, features]
    state = [batch, directions, hidden] if layout else [directions, batch, hidden]
    names = ["X", "W", "R", "B", "lengths" if lengths else "", "h0"]
    inputs = [("X", F, x_shape), ("h0", F, state)]
    if lengths:
        inputs.insert(1, ("lengths", TensorProto.INT32, [batch]))
    outputs = ["Y", "Y_h"]
    if op == "LSTM":
        names.append("c0")
        inputs.append(("c0", F, state))
        outputs.append("Y_c")
    node = helper.make_node(op, names, outputs, direction=direction, hidden_size=hidden, layout=layout, **attributes)
    y_shape = [batch, steps, directions, hidden] if layout else [steps, directions, batch, hidden]
    declared = [("Y", F, y_shape)] + [(name, F, state) for name in outputs[1:]]
    return model_of([node], inputs, declared, initializers=weights)


RECURRENT = [
    ("LSTM", "bidirectional", {"clip": 1.5}),
    ("LSTM", "reverse", {"activations": ["HardSigmoid", "LeakyRelu", "Tanh"], "activation_alpha": [0.3, 0.1]}),
    ("GRU", "bidirectional", {"linear_before_reset": 1}),
    ("GRU", "forward", {"layout": 1}),
    ("RNN", "reverse", {"activations": ["Relu"]}),
]


@pytest.mark.parametrize(("op", "direction", "attributes"), RECURRENT)
def test_recurrent_with_sequence_lengths_matches_onnxruntime(op, direction, attributes):
    """Ragged lengths (3, 5, 1 of 5 steps): steps past a sequence's end give zeros and leave its state."""
    model = recurrent_model(op, direction, hidden=4, steps=5, batch=3, features=2, **attributes)
    layout = attributes.get("layout", 0)
    x = rng_floats(*((3, 5, 2) if layout else (5, 3, 2)), seed=4)
    directions = 2 if direction == "bidirectional" else 1
    state_shape = (3, directions, 4) if layout else (directions, 3, 4)
    arrays = [x, np.array([3, 5, 1], dtype=np.int32), rng_floats(*state_shape, seed=5)]
    if op == "LSTM":
        arrays.append(rng_floats(*state_shape, seed=6))
    graph = graphopt.capture(model, tuple(torch.from_numpy(a) for a in arrays))
    got = [t.detach().numpy() for t in graph(*(torch.from_numpy(a) for a in arrays))]
    assert_close(got, batch_first_onnxruntime(op, direction, attributes, arrays, hidden=4))


def batch_first_onnxruntime(op, direction, attributes, arrays, *, hidden):
    """ONNX Runtime's outputs; for layout 1 (which it refuses), those of the layout-0 model on the
    transposed inputs, transposed back."""
    layout = attributes.get("layout", 0)
    steps, batch, features = arrays[0].shape[1::-1] + arrays[0].shape[2:] if layout else arrays[0].shape
    plain = {k: v for k, v in attributes.items() if k != "layout"}
    model = recurrent_model(op, direction, hidden, steps, batch, features, **plain)
    if not layout:
        return onnxruntime_outputs(model, arrays)
    swapped = [arrays[0].swapaxes(0, 1), arrays[1], *(a.swapaxes(0, 1) for a in arrays[2:])]
    y, *states = onnxruntime_outputs(model, swapped)
    return [y.transpose(2, 0, 1, 3), *(s.swapaxes(0, 1) for s in states)]


def test_recurrent_on_the_cpu_target_matches_onnxruntime():
    attributes = {"layout": 1, "clip": 2.0}
    model = recurrent_model("LSTM", "bidirectional", hidden=3, steps=4, batch=2, features=2, **attributes)
    arrays = [rng_floats(2, 4, 2), np.array([4, 2], dtype=np.int32), rng_floats(2, 2, 3), rng_floats(2, 2, 3)]
    assert_close(on_cpu(model, arrays), batch_first_onnxruntime("LSTM", "bidirectional", attributes, arrays, hidden=3))


@pytest.mark.parametrize("given_states", [False, True])
def test_an_lstm_exported_from_torch_matches_eager(tmp_path, given_states):
    """Two bidirectional layers: zero initial states (which the exporter writes as Expand of a constant),
    or given ones (which it slices per layer)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(2, 6, 3)
    states = (torch.randn(4, 2, 5), torch.randn(4, 2, 5)) if given_states else None
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(lstm, (x, states) if states else (x,), str(path), dynamo=False, opset_version=17)
    inputs = (x, *states) if states else (x,)
    compiled = graphopt.compile(str(path), inputs, target="cpu", check=False)
    with torch.no_grad():
        y, (h, c) = lstm(x, states)
    got = compiled(*(t.numpy() for t in inputs))
    for mine, theirs in zip(got, (y, h, c), strict=True):
        np.testing.assert_allclose(np.asarray(mine), theirs.numpy(), rtol=TOLERANCE, atol=TOLERANCE)


def test_an_unknown_activation_is_one_line_naming_the_node():
    model = recurrent_model("RNN", "forward", hidden=2, steps=2, batch=1, features=2)
    model.graph.node[0].attribute.append(helper.make_attribute("activations", ["Swish"]))
    model.graph.node[0].name = "rnn0"
    with pytest.raises(GraphoptError, match=r"RNN \(opset 22\) at node 'rnn0'.*'Swish'") as error:
        graphopt.capture(model, (torch.zeros(2, 1, 2), torch.zeros(1, dtype=torch.int32), torch.zeros(1, 1, 2)))
    assert "\n" not in str(error.value)


# -- control flow --------------------------------------------------------------------------------


def test_if_on_a_run_time_condition_reads_outer_values():
    """Both branches read the outer ``x`` (and ``then`` an outer constant); the condition picks."""
    then = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, [2, 3])]
    )
    otherwise = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, [2, 3])]
    )
    nodes = [
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32(3.0))),
        helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=otherwise),
    ]
    model = model_of(nodes, [("cond", BOOL, []), ("x", F, [2, 3])], [("y", F, [2, 3])])
    x = rng_floats(2, 3)
    for cond in (np.array(True), np.array(False)):
        assert_close(on_cpu(model, [cond, x]), onnxruntime_outputs(model, [cond, x]))


def test_if_whose_branches_differ_in_shape_is_one_line_naming_the_node():
    then = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, [2])]
    )
    otherwise = helper.make_graph(
        [helper.make_node("Concat", ["x", "x"], ["e"], axis=0)],
        "else",
        [],
        [helper.make_tensor_value_info("e", F, [4])],
    )
    node = helper.make_node("If", ["cond"], ["y"], name="choose", then_branch=then, else_branch=otherwise)
    model = model_of([node], [("cond", BOOL, []), ("x", F, [2])], [("y", F, ["n"])])
    with pytest.raises(GraphoptError, match=r"If \(opset 22\) at node 'choose'.*agree in static shape") as error:
        graphopt.capture(model, (torch.tensor(True), torch.zeros(2)))
    assert "\n" not in str(error.value)


def loop_model(trip_count_input):
    """Loop: y doubles while its sum stays under a bound (the body's condition, computed at run time)."""
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["y_in", "two"], ["y_out"]),
            helper.make_node("ReduceSum", ["y_out"], ["total"], keepdims=0),
            helper.make_node("Less", ["total", "bound"], ["cond_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", I64, []),
            helper.make_tensor_value_info("cond_in", BOOL, []),
            helper.make_tensor_value_info("y_in", F, [3]),
        ],
        [helper.make_tensor_value_info("cond_out", BOOL, []), helper.make_tensor_value_info("y_out", F, [3])],
    )
    constants = [
        numpy_helper.from_array(np.float32(2.0), "two"),
        numpy_helper.from_array(np.float32(40.0), "bound"),
    ]
    inputs = [("y", F, [3])]
    if trip_count_input:
        inputs.insert(0, ("M", I64, []))
    else:
        constants.append(numpy_helper.from_array(np.array(10, dtype=np.int64), "M"))
    node = helper.make_node("Loop", ["M", "", "y"], ["y_final"], name="loop0", body=body)
    return model_of([node], inputs, [("y_final", F, [3])], initializers=constants)


def test_loop_with_a_run_time_condition_stops_where_onnxruntime_does():
    model = loop_model(trip_count_input=False)
    y = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    assert_close(on_cpu(model, [y]), onnxruntime_outputs(model, [y]))


def test_loop_with_a_run_time_trip_count_is_one_line_naming_the_node():
    """Captured without the backend, nothing binds the trip count: it cannot be unrolled."""
    model = loop_model(trip_count_input=True)
    with pytest.raises(GraphoptError, match=r"Loop \(opset 22\) at node 'loop0'.*control flow") as error:
        graphopt.capture(model, (torch.tensor(3), torch.ones(3)))
    assert "\n" not in str(error.value)


def test_scan_reversed_over_axis_1_matches_onnxruntime():
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x_t"], ["acc_out"]), helper.make_node("Mul", ["acc_out", "x_t"], ["z"])],
        "body",
        [helper.make_tensor_value_info("acc_in", F, [2]), helper.make_tensor_value_info("x_t", F, [2])],
        [helper.make_tensor_value_info("acc_out", F, [2]), helper.make_tensor_value_info("z", F, [2])],
    )
    node = helper.make_node(
        "Scan",
        ["acc", "x"],
        ["acc_final", "zs"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[1],
        scan_input_directions=[1],
        scan_output_axes=[1],
        scan_output_directions=[1],
    )
    model = model_of([node], [("acc", F, [2]), ("x", F, [2, 4])], [("acc_final", F, [2]), ("zs", F, [2, 4])])
    arrays = [rng_floats(2), rng_floats(2, 4, seed=1)]
    assert_close(on_cpu(model, arrays), onnxruntime_outputs(model, arrays))


# -- sampling ------------------------------------------------------------------------------------


def test_roi_align_with_sampling_ratio_0_on_constant_regions_matches_the_reference():
    """sampling_ratio 0: each region's own sample grid (ceil of its bin size), known from constant regions."""
    rois = numpy_helper.from_array(np.array([[0, 0, 9, 9], [1, 2, 4, 8], [5, 5, 6.5, 7]], dtype=np.float32), "rois")
    index = numpy_helper.from_array(np.array([0, 1, 0], dtype=np.int64), "index")
    node = helper.make_node(
        "RoiAlign", ["x", "rois", "index"], ["y"], output_height=2, output_width=3, sampling_ratio=0, spatial_scale=0.9
    )
    model = model_of([node], [("x", F, [2, 3, 10, 10])], [("y", F, [3, 3, 2, 3])], initializers=[rois, index])
    x = rng_floats(2, 3, 10, 10)
    assert_close(on_cpu(model, [x]), ReferenceEvaluator(model).run(None, {"x": x}))


def test_deform_conv_with_stride_dilation_and_groups_matches_the_reference():
    node = helper.make_node(
        "DeformConv",
        ["x", "w", "offset", "b", "mask"],
        ["y"],
        kernel_shape=[2, 2],
        strides=[2, 1],
        dilations=[1, 2],
        pads=[1, 0, 1, 1],
        group=2,
        offset_group=2,
    )
    inputs = [
        ("x", F, [1, 4, 5, 5]),
        ("w", F, [2, 2, 2, 2]),
        ("offset", F, [1, 16, 3, 4]),
        ("b", F, [2]),
        ("mask", F, [1, 8, 3, 4]),
    ]
    model = model_of([node], inputs, [("y", F, [1, 2, 3, 4])])
    arrays = [rng_floats(*shape, seed=i) for i, (_, _, shape) in enumerate(inputs)]
    feed = {name: array for (name, _, _), array in zip(inputs, arrays, strict=True)}
    assert_close(on_cpu(model, arrays), ReferenceEvaluator(model).run(None, feed))
