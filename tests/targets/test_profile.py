"""``CompiledModel.profile`` / ``graphopt bench --profile``: every kernel of a run, timed, with GFLOP/s."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import graphopt
from graphopt.cli import main
from graphopt.targets.runtime.manifest import Manifest
from graphopt.targets.runtime.profile import RUNTIME_ROW


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1)).eval()


X = torch.randn(1, 3, 24, 24)


def test_every_kernel_is_timed_and_the_conv_flops_are_the_real_count(tmp_path) -> None:
    compiled = graphopt.compile(_cnn(), X, target="cpu", out_dir=tmp_path / "cnn")
    profile = graphopt.load(tmp_path / "cnn").profile(X.numpy(), runs=3)
    names = [k.name for k in profile.kernels]
    assert RUNTIME_ROW in names and len(names) == len(set(names))
    convs = [k for k in profile.kernels if "conv2d" in k.name]
    assert sorted(k.calls for k in convs) == [1, 1]  # two convolutions, each one kernel call per run
    # The second conv: 2 FLOPs per multiply-add over 16 inputs x 3x3 for each of 32x24x24 outputs,
    # plus its bias; TVM's estimate of the scheduled kernel must agree within the epilogue's share.
    want = 2 * 16 * 9 * 32 * 24 * 24
    second = max(convs, key=lambda k: k.flops or 0)
    assert second.flops == pytest.approx(want, rel=0.02)
    assert second.gflops is not None and second.gflops > 0
    assert profile.kernels == sorted(profile.kernels, key=lambda k: k.ms, reverse=True)
    assert profile.kernel_ms > 0 and profile.whole_ms > 0 and profile.runs == 3
    assert any("timing hook adds about" in note for note in profile.notes)
    # the FLOPs travel in the manifest, so a loaded artifact (here) and the in-memory one agree
    assert Manifest.read(tmp_path / "cnn").kernel_flops == compiled.manifest.kernel_flops
    # and so do the graph nodes each kernel computes: the conv kernels name the two convolutions
    assert Manifest.read(tmp_path / "cnn").kernel_nodes == compiled.manifest.kernel_nodes
    assert sorted(len(k.nodes) for k in convs) == [1, 2]  # conv+relu fused; the last conv alone


def test_an_artifact_without_kernel_flops_still_profiles(tmp_path) -> None:
    graphopt.compile(_cnn(), X, target="cpu", out_dir=tmp_path / "cnn")
    manifest = json.loads((tmp_path / "cnn" / "manifest.json").read_text())
    del manifest["kernel_flops"]  # as written before the FLOPs were recorded
    (tmp_path / "cnn" / "manifest.json").write_text(json.dumps(manifest))
    profile = graphopt.load(tmp_path / "cnn").profile(X.numpy(), runs=1)
    assert all(k.gflops is None for k in profile.kernels)
    assert any("records no kernel FLOPs" in note for note in profile.notes)


def test_bench_profile_prints_the_kernels(capsys) -> None:
    argv = ["bench", "samples/cnn.py:digits_cnn", "--input-shape", "1x1x28x28", "--runs", "2", "--repeat", "1"]
    assert main([*argv, "--profile", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    kernels = result["profile"]["kernels"]
    assert any("conv2d" in k["name"] and k["gflops"] for k in kernels)
    assert any("conv1" in k["nodes"] and "relu1" in k["nodes"] for k in kernels)  # what each kernel computes
    assert result["profile"]["kernel_ms"] == pytest.approx(sum(k["ms"] for k in kernels))
    assert main([*argv, "--profile", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "kernels, slowest first" in out and "GFLOP/s" in out and "more)" in out
    assert main([*argv, "--profile", "--rpc", "127.0.0.1:9"]) == 2
    assert "does not combine with --rpc" in capsys.readouterr().err
