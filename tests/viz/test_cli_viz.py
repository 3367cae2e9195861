"""`graphopt viz MODEL --input-shape ... [--passes ...] -o FILE` writes the page and says so."""

from __future__ import annotations

import json
import re

from graphopt.cli import main

CNN = "samples/cnn.py:digits_cnn"


def test_viz_writes_html_for_a_sample(tmp_path, capsys):
    out = tmp_path / "cnn.html"
    assert main(["viz", CNN, "--input-shape", "1x1x28x28", "-o", str(out)]) == 0
    assert f"wrote {out}" in " ".join(capsys.readouterr().out.split())
    data = json.loads(re.search(r'id="graphopt-data">(.*?)</script>', out.read_text(), re.S).group(1))
    assert data["passes"] == [] and any(n["kind"] == "conv2d" for n in data["states"][0]["graph"]["nodes"])


def test_viz_with_passes_shows_each_pass(tmp_path, capsys):
    out = tmp_path / "pipeline.html"
    status = main(["viz", CNN, "--input-shape", "1x1x28x28", "--passes", "fuse_conv_bn", "-o", str(out)])
    assert status == 0
    assert "1 pass shown before/after" in capsys.readouterr().out
    data = json.loads(re.search(r'id="graphopt-data">(.*?)</script>', out.read_text(), re.S).group(1))
    assert [p["record"]["name"] for p in data["passes"]] == ["fuse_conv_bn"]
    assert data["passes"][0]["diff"]["removed"] == ["bn1", "bn2"]


def test_viz_dot_export(tmp_path):
    out = tmp_path / "cnn.dot"
    assert main(["viz", CNN, "--input-shape", "1x1x28x28", "-o", str(out)]) == 0
    assert out.read_text().startswith("digraph")


def test_viz_bad_output_name_is_one_line_error(tmp_path, capsys):
    status = main(["viz", CNN, "--input-shape", "1x1x28x28", "-o", str(tmp_path / "graph.png")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and ".html, .dot or .svg" in err
