"""The CI subset of the ONNX conformance scoreboard (``benchmarks/onnx_conformance.py``; the full run is
a benchmark): one onnx backend node case per converter family graphopt adds, imported with
``graphopt.capture`` and checked against the case's reference outputs within its own rtol/atol."""

from __future__ import annotations

import pytest

from benchmarks.onnx_conformance import node_cases, run_graphopt

CASES = (
    "test_resize_downsample_scales_cubic_antialias",
    "test_resize_tf_crop_and_resize_extrapolation_value",
    "test_gridsample_bicubic",
    "test_affine_grid_2d",
    "test_rotary_embedding_interleaved",
    "test_linear_attention_gated_delta_gqa",
    "test_cast_FLOAT_to_INT4",
    "test_castlike_UINT4_to_FLOAT",
    "test_cast_e8m0_FLOAT_to_FLOAT8E8M0",
    "test_cast_no_saturate_FLOAT_to_FLOAT8E5M2",
    "test_flexattention_causal_mask",
    "test_quantizelinear_blocked_asymmetric",
    "test_dequantizelinear_axis",
    "test_qlinearmatmul_3D_int8_float32",
    "test_unique_not_sorted_without_axis",
    "test_col2im_5d",
    "test_top_k_same_values_largest",
    "test_gathernd_example_int32_batch_dim1",
    "test_layer_normalization_2d_axis1_expanded",
    "test_blackmanwindow_expanded",
)


@pytest.fixture(scope="module")
def cases():
    return {case.name: case for case in node_cases(None)}


@pytest.mark.parametrize("name", CASES)
def test_node_case_matches_the_reference(cases, name):
    outcome, why = run_graphopt(cases[name])
    assert outcome == "pass", why


def test_control_flow_is_one_line_naming_the_node(cases):
    outcome, why = run_graphopt(cases["test_loop11"])
    assert outcome == "unsupported" and "Loop (opset 11) at node" in why and "control flow" in why
