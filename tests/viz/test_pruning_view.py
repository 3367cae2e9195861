"""The viewer's pruning overlay: a dependency group highlighted across the graph, nodes coloured by
sensitivity. The data is checked in Python (members follow a residual group through its adds), then
in a real browser: what the scene marks and colours for the group and mode chosen."""

from __future__ import annotations

import json
import re

import pytest
import torch

import graphopt
from graphopt.cli import main
from graphopt.pruning import SensitivityReport, SensitivityRow
from graphopt.pruning.overlay import overlay
from tests.viz.browsing import box, open_page


def page_data(path):
    return json.loads(re.search(r'id="graphopt-data">(.*?)</script>', path.read_text(), re.S).group(1))


@pytest.fixture(scope="module")
def resnet():
    from samples.resnet import resnet_small

    return graphopt.capture(resnet_small().eval(), torch.randn(1, 3, 32, 32))


@pytest.fixture(scope="module")
def report(resnet):
    """A hand-made sensitivity report: group 0 costs 0.5 of top-1 at every level, group 1 nothing, the rest 0.1."""
    rows = []
    for group in graphopt.pruning.groups(resnet):
        loss = 0.5 if group.index == 0 else 0.0 if group.index == 1 else 0.1
        for level in (0.25, 0.5):
            rows.append(SensitivityRow(group.index, "x", level, group.size, group.size // 2, 0.9, 0.9, 0.9 - loss))
    return SensitivityReport("resnet", "top-1", 0.9, True, None, rows)


def test_overlay_follows_a_residual_group_through_adds(resnet):
    groups = overlay(resnet)["groups"]
    stream = groups[0]  # the stem's channels: the first stage's whole residual stream
    assert {"stem_0", "stem_1", "add", "layers_0_conv1"} <= set(stream["members"])
    assert "layers_0_conv1" not in stream["outputs"]  # it reads the stream, its output is another group
    assert all(g["damage"] is None for g in groups)
    inner = groups[1]
    assert inner["members"] == ["layers_0_conv1", "layers_0_bn1", "layers_0_relu1", "layers_0_conv2"]


def test_overlay_damage_is_the_mean_loss_and_a_foreign_report_matches_nothing(resnet, report):
    groups = overlay(resnet, sensitivity=report)["groups"]
    assert [g["damage"] for g in groups[:3]] == pytest.approx([0.5, 0.0, 0.1])
    foreign = SensitivityReport("x", "top-1", 0.9, True, None, [SensitivityRow(0, "x", 0.5, 999, 1, 1, 1, 0.0)])
    assert overlay(resnet, sensitivity=foreign)["groups"][0]["damage"] is None


@pytest.mark.browser
def test_group_highlight_and_sensitivity_colours_in_the_browser(browser, tmp_path, resnet, report):
    path = graphopt.visualize(resnet, tmp_path / "prune.html", sensitivity=report)
    groups = page_data(path)["pruning"]["groups"]
    open_page(browser, path)
    browser.execute_script("window.__graphopt.highlightGroup(0)")
    members = set(groups[0]["members"])
    for name in members:
        shown = box(browser, name)
        assert shown is not None, f"{name} of the highlighted group is not shown"
        assert shown["inGroup"] and shown["outline"] == "#2563eb" and shown["badge"] == "group 0"
    boxes = browser.execute_script("return window.__graphopt.app.scene.boxes")
    others = [b for b in boxes if b.get("node") and b["node"] not in members]
    assert others and not any(b["inGroup"] for b in others)
    assert "layers_0_bn1" in {b["node"] for b in others}  # block 0's inner group, not the stream
    assert "Dependency group 0" in browser.find_element("id", "details").text
    browser.execute_script("window.__graphopt.highlightGroup(null)")
    assert not any(b.get("inGroup") for b in browser.execute_script("return window.__graphopt.app.scene.boxes"))

    options = [o.get_attribute("value") for o in browser.find_elements("css selector", "#color-mode option")]
    assert "sensitivity" in options
    browser.execute_script("window.__graphopt.expandAll(); window.__graphopt.setColorMode('sensitivity')")
    assert box(browser, "stem_0")["stroke"] == "hsl(0, 70%, 40%)"  # the most sensitive group: red
    assert box(browser, "layers_0_conv1")["stroke"] == "hsl(120, 70%, 40%)"  # harmless: green
    assert box(browser, "layers_1_conv1")["stroke"] == "hsl(96, 70%, 40%)"  # 0.1 of 0.5
    assert box(browser, "x")["stroke"] == "#cbd5e1"  # the input is in no group
    assert "most sensitive: 0.5 top-1 lost" in browser.find_element("id", "legend").text


def test_cli_viz_takes_a_sensitivity_json(tmp_path, capsys, report):
    saved = tmp_path / "sens.json"
    saved.write_text(report.to_json())
    out = tmp_path / "resnet.html"
    args = ["viz", "samples/resnet.py:resnet_small", "--input-shape", "1x3x32x32", "-o", str(out)]
    assert main([*args, "--sensitivity", str(saved)]) == 0
    assert "pruning groups" in capsys.readouterr().out
    assert page_data(out)["pruning"]["groups"][0]["damage"] == pytest.approx(0.5)


def test_cli_viz_pruning_bad_input_is_one_line(tmp_path, capsys):
    args = ["viz", "samples/cnn.py:digits_cnn", "--input-shape", "1x1x28x28"]
    (tmp_path / "bad.json").write_text("{}")
    assert main([*args, "--sensitivity", str(tmp_path / "bad.json"), "-o", str(tmp_path / "a.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the JSON of `graphopt sensitivity --json`" in err
    assert main([*args, "--prune-groups", "-o", str(tmp_path / "a.dot")]) == 2
    assert "need an .html output" in capsys.readouterr().err
    assert not (tmp_path / "a.html").exists() and not (tmp_path / "a.dot").exists()
