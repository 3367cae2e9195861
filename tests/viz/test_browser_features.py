"""Explorer features in a real browser: pan, zoom and Fit; the colour modes and their legends; search
by op; the facts in the details panel; what a pass added, removed or folded marked on the canvas; the
pass timeline's layout. Each test reads state the page exposes (the view transform, the scene's boxes,
canvas pixels, DOM text), so it fails if the feature breaks."""

from __future__ import annotations

import math
import re

import pytest
import torch

import graphopt
from graphopt.graph_json import PALETTE, graph_to_json
from graphopt.visualize import pipeline_payload, write
from tests.viz.browsing import box, group_box, next_frame, open_page, view

pytestmark = pytest.mark.browser


# -- pages -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    return tmp_path_factory.mktemp("viz-features")


@pytest.fixture(scope="module")
def resnet_o2(pages, resnet_graph):
    """(path, payload) of resnet_small's O2 pipeline page."""
    payload = pipeline_payload(resnet_graph, "O2")
    return write(payload, pages / "resnet_o2.html"), payload


@pytest.fixture(scope="module")
def digits_o2(pages):
    """(path, payload) of digits_cnn's O2 pipeline page: fuse_conv_bn and pretranspose_weights change it."""
    from samples.cnn import digits_cnn

    graph = graphopt.capture(digits_cnn(pretrained=False), torch.randn(1, 1, 28, 28))
    payload = pipeline_payload(graph, "O2")
    return write(payload, pages / "digits_o2.html"), payload


@pytest.fixture(scope="module")
def quantized_page(pages):
    """(path, graph JSON) of digits_cnn quantized to int8 (QDQ form) with a little calibration data."""
    from samples.cnn import digits_cnn

    torch.manual_seed(0)
    graph = graphopt.capture(digits_cnn(pretrained=False), torch.randn(1, 1, 28, 28))
    quantized, _ = graphopt.quantize(graph, [torch.randn(4, 1, 28, 28) for _ in range(2)])
    return graphopt.visualize(quantized, pages / "quantized.html"), graph_to_json(quantized)


# -- helpers -----------------------------------------------------------------------------------
def nodes_of(graph_json):
    return {node["name"]: node for node in graph_json["nodes"]}


def canvas_size(driver):
    return driver.execute_script("const r = window.__graphopt.renderer; return [r.cssWidth, r.cssHeight]")


def screen_boxes(driver):
    """Every box's [left, top, right, bottom] on screen (CSS pixels, relative to the canvas)."""
    return driver.execute_script(
        """
        const r = window.__graphopt.renderer;
        return window.__graphopt.app.scene.boxes.map((b) => [...r.toScreen(b.x, b.y), ...r.toScreen(b.x + b.w, b.y + b.h)]);
        """
    )


def wheel(driver, x, y, delta_y):
    """A mouse-wheel turn with the pointer at canvas point (x, y)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    canvas = driver.find_element("id", "canvas")
    size = canvas.size
    origin = ScrollOrigin.from_element(canvas, int(x - size["width"] / 2), int(y - size["height"] / 2))
    ActionChains(driver).scroll_from_origin(origin, 0, delta_y).perform()


def drag(driver, x, y, dx, dy):
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "canvas")
    size = canvas.size
    chain = ActionChains(driver).move_to_element_with_offset(
        canvas, int(x - size["width"] / 2), int(y - size["height"] / 2)
    )
    chain.click_and_hold().move_by_offset(dx, dy).release().perform()


def minimap_hidden(driver):
    next_frame(driver)  # the minimap decides on each draw
    return driver.execute_script("return document.getElementById('minimap').hidden")


def colour_mode(driver, mode):
    from selenium.webdriver.support.select import Select

    Select(driver.find_element("id", "color-mode")).select_by_value(mode)


def rgb(driver, colour):
    """A CSS colour ("#3b82f6", "hsl(...)") as [r, g, b], as the browser resolves it."""
    return driver.execute_script(
        """
        const probe = document.createElement("i");
        probe.style.color = arguments[0];
        document.body.append(probe);
        const value = getComputedStyle(probe).color;
        probe.remove();
        return value.match(/[\\d.]+/g).slice(0, 3).map(Number);
        """,
        colour,
    )


def bar_pixel(driver, name):
    """The canvas pixel in the colour bar at the left of node `name`'s box (brought into view first)."""
    driver.execute_script(
        """
        const g = window.__graphopt, b = g.app.scene.boxes[g.app.boxOfNode.get(arguments[0])];
        g.renderer.centerOn(b.x + b.w / 2, b.y + b.h / 2);
        """,
        name,
    )
    next_frame(driver)
    return driver.execute_script(
        """
        const g = window.__graphopt, r = g.renderer, b = g.app.scene.boxes[g.app.boxOfNode.get(arguments[0])];
        const [sx, sy] = r.toScreen(b.x + 2.5, b.y + b.h / 2);
        const px = r.ctx.getImageData(Math.round(sx * r.ratio), Math.round(sy * r.ratio), 1, 1).data;
        return [px[0], px[1], px[2]];
        """,
        name,
    )


def close(colour_a, colour_b, tolerance=3):
    return all(abs(a - b) <= tolerance for a, b in zip(colour_a, colour_b, strict=True))


def legend_rows(driver):
    """[(swatch colour as [r, g, b], label)] of the legend's colour rows (not the change-ring row)."""
    return [
        (rgb(driver, colour), label)
        for colour, label in driver.execute_script(
            """
            return [...document.querySelectorAll("#legend > div:not(.changes)")].map((row) =>
              [getComputedStyle(row.querySelector(".swatch")).backgroundColor, row.textContent]);
            """
        )
    ]


def details_facts(driver, panel="details"):
    """A side panel's facts table as {row heading: row text}, and its heading."""
    rows = driver.execute_script(
        """
        return [...document.querySelectorAll(`#${arguments[0]} table.facts > tbody > tr`)].map((tr) =>
          [tr.querySelector("th").textContent, tr.querySelector("td").innerText]);
        """,
        panel,
    )
    return dict(rows), driver.find_element("css selector", f"#{panel} h2").text


def pass_report(driver):
    """The pass report's facts: {"removed": "2 bn1, bn2", "nodes": "13 → 11", ...}."""
    return details_facts(driver, "pass-report")[0]


def step_buttons(driver):
    return driver.find_elements("css selector", "#timeline .step")


def click_step(driver, name):
    """Click the first timeline step of pass `name` ("captured" for the captured graph)."""
    for step in step_buttons(driver):
        if step.text.split("\n")[0] == name:
            step.click()
            return
    raise AssertionError(f"no step {name}")


def side(driver, which):
    driver.find_element("css selector", f"#timeline [data-side={which}]").click()


# -- 1. pan and zoom ---------------------------------------------------------------------------
def test_wheel_zooms_about_the_pointer_drag_pans_and_fit_restores(browser, resnet_page):
    open_page(browser, resnet_page)
    fitted = view(browser)
    width, _ = canvas_size(browser)
    # ResNet is tall: Fit fits it to the width and starts at the top (the minimap shows the rest).
    boxes = screen_boxes(browser)
    assert all(b[0] >= 0 and b[2] <= width for b in boxes)
    assert min(b[1] for b in boxes) == pytest.approx(30, abs=1)  # the fit margin
    # The wheel zooms in about the pointer: the box under it stays put, the others spread out.
    x, y = browser.execute_script("return window.__graphopt.groupScreenPosition('layers.1')")
    stem = browser.execute_script("return window.__graphopt.screenPosition('stem_0')")
    wheel(browser, x, y, -200)
    zoomed = view(browser)
    assert zoomed["scale"] == pytest.approx(fitted["scale"] * math.exp(200 * 0.0015), rel=1e-3)
    after = browser.execute_script("return window.__graphopt.groupScreenPosition('layers.1')")
    assert after == pytest.approx([x, y], abs=1.5)
    stem_after = browser.execute_script("return window.__graphopt.screenPosition('stem_0')")
    assert math.dist(stem_after, after) == pytest.approx(math.dist(stem, [x, y]) * math.exp(0.3), rel=0.02)
    # Dragging empty canvas pans by the pointer's movement and selects nothing.
    assert browser.execute_script("return window.__graphopt.renderer.hitTest(60, 100)") is None
    drag(browser, 60, 100, 150, 90)
    panned = view(browser)
    assert panned["scale"] == zoomed["scale"]
    assert (panned["tx"] - zoomed["tx"], panned["ty"] - zoomed["ty"]) == pytest.approx((150, 90), abs=1)
    assert browser.execute_script("return window.__graphopt.app.selected") is None
    assert not minimap_hidden(browser)
    # Fit brings back the fitted view.
    browser.find_element("id", "fit").click()
    assert view(browser) == pytest.approx(fitted)


def test_fit_brings_every_box_of_a_short_graph_into_view(browser, pages):
    from samples.mnist_mlp import mnist_mlp

    path = graphopt.visualize(mnist_mlp(pretrained=False), pages / "mlp.html", example_inputs=torch.randn(1, 784))
    open_page(browser, path)
    width, height = canvas_size(browser)

    def all_in_view():
        return all(b[0] >= 0 and b[1] >= 0 and b[2] <= width and b[3] <= height for b in screen_boxes(browser))

    assert all_in_view() and minimap_hidden(browser)  # the whole graph shows: no overview needed
    x, y = browser.execute_script("return window.__graphopt.screenPosition('fc2')")
    for _ in range(3):
        wheel(browser, x, y, -400)
    drag(browser, 20, 20, 300, 0)
    assert not all_in_view() and not minimap_hidden(browser)
    browser.find_element("tag name", "body").send_keys("f")  # the keyboard shortcut for Fit
    assert all_in_view() and minimap_hidden(browser)
    fitted = view(browser)
    wheel(browser, x, y, 600)  # zoomed out: everything still in view, smaller
    assert view(browser)["scale"] < fitted["scale"] / 2 and all_in_view()
    browser.find_element("id", "fit").click()  # Fit fills the window again
    assert view(browser) == pytest.approx(fitted) and all_in_view()
    assert max(b[3] for b in screen_boxes(browser)) - min(b[1] for b in screen_boxes(browser)) > height / 2


# -- 2. colour modes ---------------------------------------------------------------------------
def test_colour_by_op_kind_and_fusion_group(browser, resnet_o2):
    path, payload = resnet_o2
    final = payload["states"][-1]["graph"]
    nodes = nodes_of(final)
    open_page(browser, path, fragment="expand=all")  # every node its own box
    assert browser.execute_script("return window.__graphopt.app.scene.boxes.filter((b) => b.group).length") == 0
    # Op kind: each box has its category's colour; the legend lists the categories shown.
    for name in ("stem_0", "layers_1_conv1", "layers_1_relu1", "add_1", "flatten"):
        assert box(browser, name)["stroke"] == PALETTE[nodes[name]["category"]]
    assert close(bar_pixel(browser, "layers_1_conv1"), rgb(browser, PALETTE["conv"]))
    present = {node["category"] for node in final["nodes"] if node["op"] != "get_attr"}
    expected = [category for category in PALETTE if category in present]
    assert [label for _, label in legend_rows(browser)] == expected
    assert [colour for colour, _ in legend_rows(browser)] == [rgb(browser, PALETTE[c]) for c in expected]

    # Fusion group: one colour per group, grey for what is not fused; the legend names the groups.
    colour_mode(browser, "fusion")
    groups: dict[str, list[str]] = {}
    for node in final["nodes"]:
        if node["fusion_group"]:
            groups.setdefault(node["fusion_group"], []).append(node["name"])
    assert len(groups) >= 5
    strokes = {group: {box(browser, name)["stroke"] for name in members} for group, members in groups.items()}
    assert all(len(colours) == 1 for colours in strokes.values()), strokes  # a group shares one colour
    assert len({next(iter(c)) for c in strokes.values()}) == len(groups)  # and groups differ
    assert box(browser, "flatten")["stroke"] == "#cbd5e1" and box(browser, "x")["stroke"] == "#cbd5e1"
    conv_group = nodes["layers_1_conv1"]["fusion_group"]
    assert close(bar_pixel(browser, "layers_1_conv1"), rgb(browser, next(iter(strokes[conv_group]))))
    legend = legend_rows(browser)
    patterns = {group: nodes[members[0]]["fusion_pattern"] for group, members in groups.items()}
    assert [label for _, label in legend] == [f"{g} {patterns[g]}" for g in groups] + ["not fused"]
    assert [colour for colour, _ in legend[:-1]] == [rgb(browser, next(iter(strokes[g]))) for g in groups]
    assert "conv2d+bias+relu" in browser.find_element("id", "legend").text

    colour_mode(browser, "kind")  # and back
    assert box(browser, "layers_1_conv1")["stroke"] == PALETTE["conv"]


def test_colour_by_quantized_or_float(browser, quantized_page):
    path, graph_json = quantized_page
    nodes = nodes_of(graph_json)
    assert nodes["conv1"]["quantized"] and nodes["x_q"]["quantized"]
    assert not nodes["relu1"]["quantized"] and "bn1" not in nodes  # BatchNorm folded into conv1 first
    open_page(browser, path)
    assert box(browser, "relu1")["stroke"] == PALETTE["activation"]
    before = bar_pixel(browser, "relu1")
    colour_mode(browser, "quant")
    red, blue, grey = "#dc2626", "#2563eb", "#94a3b8"
    for node in graph_json["nodes"]:
        shown = box(browser, node["name"])
        if shown is None:
            assert node["op"] == "get_attr"  # constants are hidden
            continue
        is_float = any(d.startswith(("float", "bfloat")) for d in node["dtypes"])
        assert shown["stroke"] == (red if node["quantized"] else blue if is_float else grey), node["name"]
    assert box(browser, "conv1")["stroke"] == red and box(browser, "relu1")["stroke"] == blue
    assert close(bar_pixel(browser, "conv1"), rgb(browser, red))
    assert close(bar_pixel(browser, "relu1"), rgb(browser, blue)) and not close(before, rgb(browser, blue))
    legend = legend_rows(browser)
    assert [label for _, label in legend] == ["quantized", "float", "other (int, shape)"]
    assert [colour for colour, _ in legend] == [rgb(browser, c) for c in (red, blue, grey)]


# -- 3. search by op ---------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["conv2d", "relu"])
def test_search_by_op_finds_and_highlights_its_nodes(browser, resnet_page, resnet_graph, op):
    with_op = [n.name for n in resnet_graph.nodes if resnet_graph.info(n).kind == op]
    assert len(with_op) >= 5
    assert any(op not in name for name in with_op)  # stem_0, stem_2: found by their op, not their name
    open_page(browser, resnet_page)
    search = browser.find_element("id", "search")
    search.send_keys(op)
    results = browser.find_elements("css selector", "#search-results .result")
    assert {r.get_attribute("data-node") for r in results} == set(with_op)
    assert all(r.find_element("css selector", ".dim").text.startswith(op) for r in results)
    summary = browser.find_element("css selector", "#search-results .more").text
    assert summary.startswith(f"{len(with_op)} matches")
    assert set(browser.execute_script("return [...window.__graphopt.app.matches]")) == set(with_op)
    # Collapsed modules say how many of their nodes match and glow; so do matching nodes shown.
    layer = [name for name in with_op if name.startswith("layers_1_")]
    assert group_box(browser, "layers.1")["badge"] == f"{len(layer)} found"
    assert group_box(browser, "layers.1")["glow"]
    match, other = ("stem_0", "stem_2") if op == "conv2d" else ("stem_2", "stem_0")
    assert box(browser, match)["glow"] and not box(browser, other)["glow"] and not box(browser, "flatten")["glow"]
    browser.execute_script("window.__graphopt.expandAll()")
    glowing = browser.execute_script(
        "return window.__graphopt.app.scene.boxes.filter((b) => b.glow).map((b) => b.node)"
    )
    assert set(glowing) == set(with_op)
    # Enter opens the first match: it is selected and its details show the op.
    search.send_keys("\n")
    assert browser.execute_script("return window.__graphopt.app.selected") == {"node": with_op[0]}
    assert browser.find_element("css selector", "#details h2").text.split() == [op, with_op[0]]
    # Escape clears the search and the highlights.
    search.send_keys("\ue00c")  # Escape
    assert browser.execute_script("return window.__graphopt.app.scene.boxes.filter((b) => b.glow).length") == 0


def test_search_matches_part_of_an_op_name(browser, resnet_page, resnet_graph):
    pools = [n.name for n in resnet_graph.nodes if "avg_pool" in resnet_graph.info(n).kind]
    assert pools == ["pool"]  # adaptive_avg_pool2d: "avg_pool" is in its op, not its name
    open_page(browser, resnet_page)
    browser.find_element("id", "search").send_keys("avg_pool")
    results = browser.find_elements("css selector", "#search-results .result")
    assert [r.get_attribute("data-node") for r in results] == pools
    assert box(browser, "pool")["glow"]


# -- 4. the details panel ----------------------------------------------------------------------
def test_details_show_op_shapes_params_flops_source_and_fusion(browser, resnet_o2):
    path, payload = resnet_o2
    node = nodes_of(payload["states"][-1]["graph"])["layers_1_conv1"]
    open_page(browser, path)
    browser.execute_script("window.__graphopt.reveal('layers_1_conv1')")
    facts, heading = details_facts(browser)
    assert heading.split() == ["conv2d", "layers_1_conv1", "fused"]  # the page opens after the last pass
    assert facts["op"] == node["label"] and "Conv2d" in facts["op"]
    assert facts["target"] == "layers.1.conv1"
    assert facts["attributes"].startswith("Conv2d(8, 16")
    assert facts["inputs"] == "layers_0_relu2 1×8×32×32 float32"
    assert facts["output"] == "1×16×16×16 float32"
    # Parameters: each one's shape, dtype and size, then the total (O2 folded the BatchNorm in: a bias).
    weight_bytes, bias_bytes = 16 * 8 * 3 * 3 * 4, 16 * 4
    assert [p["name"] for p in node["params"]] == ["weight", "bias"]
    params = [line.split("\t") for line in facts["parameters"].splitlines()]
    assert params == [
        ["weight", "16×8×3×3", "float32", "4.5 KiB"],
        ["bias", "16", "float32", "64 B"],
        ["total", f"{(weight_bytes + bias_bytes) / 1024:.1f} KiB"],
    ]
    assert node["flops"] > 0
    count, exact = re.fullmatch(r"(\S+) \((.+)\)", facts["FLOPs"]).groups()
    assert re.sub(r"\D", "", exact) == str(node["flops"])
    value, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", count).groups()  # compact: "589.8K"
    assert float(value) * 1000 ** " KMGT".index(unit or " ") == pytest.approx(node["flops"], rel=0.01)
    assert re.match(r"samples/resnet\.py:\d+\n", facts["source"]), facts["source"]
    assert "self.conv1(x)" in facts["source"]  # the line of code itself
    assert node["fusion_group"] and node["fusion_pattern"] == "conv2d+bias+relu"
    assert facts["fusion"] == f"{node['fusion_group']} conv2d+bias+relu"
    assert "quantization" not in facts


def test_details_show_quantization_params(browser, quantized_page):
    path, graph_json = quantized_page
    nodes = nodes_of(graph_json)
    open_page(browser, path)
    browser.execute_script("window.__graphopt.reveal('x_q')")
    facts, heading = details_facts(browser)
    assert heading.split() == ["quantize", "x_q"]
    assert facts["output"] == "1×1×28×28 int8"
    assert facts["inputs"] == "x 1×1×28×28 float32"
    scale = nodes["x_q"]["quant"]["scale"]
    assert facts["quantization"].splitlines() == [f"scale: {scale:.4g}", "zero_point: 0", "qmin: -128", "qmax: 127"]
    # A per-channel dequantize: its 16 scales are shortened, its axis shown.
    browser.execute_script("window.__graphopt.reveal('conv1_weight')")
    facts, heading = details_facts(browser)
    quant = facts["quantization"].splitlines()
    assert quant[0] == 'q: "tensor[16, 1, 3, 3] int8"'
    assert quant[1].startswith("scales: [") and quant[1].endswith('"… 16 values"]')
    assert quant[2] == "axis: 0"
    first_scale = nodes["conv1_weight"]["quant"]["scales"][0]
    assert f"{first_scale:.4g}" in quant[1]
    assert "conv1_weight_int8" in facts["inputs"] and "conv1_weight_scale" in facts["inputs"]


# -- 5. what a pass changed, marked in the pipeline view -------------------------------------
def test_pipeline_marks_removed_changed_added_and_folded_nodes(browser, digits_o2):
    path, payload = digits_o2
    by_name = {p["record"]["name"]: p for p in reversed(payload["passes"])}  # the first run of each
    assert by_name["fuse_conv_bn"]["diff"]["removed"] == ["bn1", "bn2"]
    assert by_name["pretranspose_weights"]["diff"]["added"] == ["matmul", "add"]
    assert by_name["pretranspose_weights"]["diff"]["folded"] == ["fc_weight_t", "fc_bias"]
    open_page(browser, path)
    changed_steps = [s.text.split("\n")[0] for s in step_buttons(browser) if "did-change" in s.get_attribute("class")]
    assert changed_steps == ["fuse_conv_bn", "pretranspose_weights", "mark_fusion_groups"]
    colours = browser.execute_script("return GraphoptScene.CHANGE_COLORS")

    # fuse_conv_bn: after it the BatchNorms are gone and the convs changed; before it they are marked removed.
    click_step(browser, "fuse_conv_bn")
    counts = by_name["fuse_conv_bn"]["record"]["before"]["nodes"], by_name["fuse_conv_bn"]["record"]["after"]["nodes"]
    assert counts[1] == counts[0] - 2
    assert (
        browser.find_element("css selector", "#timeline .step.active").text
        == f"fuse_conv_bn\n{counts[0]}→{counts[1]} ops"
    )
    assert box(browser, "bn1") is None
    assert box(browser, "conv1")["badge"] == "changed" and box(browser, "conv1")["outline"] == colours["changed"]
    assert box(browser, "relu1")["badge"] is None
    side(browser, "before")
    assert box(browser, "bn1")["badge"] == "removed" and box(browser, "bn1")["outline"] == colours["removed"]
    assert box(browser, "conv1")["badge"] == "changed"  # on both sides
    report = pass_report(browser)
    assert report["removed"] == "2 bn1, bn2" and report["changed"] == "2 conv1, conv2"
    assert report["nodes"] == f"{counts[0]} → {counts[1]}"

    # pretranspose_weights: the Linear became matmul + add (added) reading two new constants (folded).
    click_step(browser, "pretranspose_weights")
    for name in ("matmul", "add"):
        assert box(browser, name)["badge"] == "added" and box(browser, name)["outline"] == colours["added"]
    assert box(browser, "fc") is None and box(browser, "fc_weight_t") is None  # constants hidden
    report = pass_report(browser)
    assert report["added"] == "2 matmul, add" and report["folded"] == "2 fc_weight_t, fc_bias"
    browser.find_element("id", "show-constants").click()
    for name in ("fc_weight_t", "fc_bias"):
        assert box(browser, name)["badge"] == "folded" and box(browser, name)["outline"] == colours["folded"]
    side(browser, "before")
    assert box(browser, "fc")["badge"] == "removed" and box(browser, "matmul") is None
    # The legend explains the rings.
    rings = browser.execute_script(
        "return [...document.querySelectorAll('#legend .changes .item')].map((i) =>"
        " [i.textContent, getComputedStyle(i.querySelector('.ring')).borderTopColor])"
    )
    assert [kind for kind, _ in rings] == ["added", "removed", "changed", "fused", "folded"]
    assert all(rgb(browser, ring) == rgb(browser, colours[kind]) for kind, ring in rings)

    # mark_fusion_groups: the fused nodes.
    click_step(browser, "mark_fusion_groups")
    assert {
        b["node"] for b in browser.execute_script("return window.__graphopt.app.scene.boxes") if b["badge"] == "fused"
    } == {"conv1", "relu1", "conv2", "relu2", "matmul", "add"}
    click_step(browser, "captured")  # no pass chosen: nothing marked, no change legend
    assert all(b["badge"] is None for b in browser.execute_script("return window.__graphopt.app.scene.boxes"))
    assert browser.find_elements("css selector", "#legend .changes") == []


def test_fold_constants_marks_what_it_folded(browser, pages):
    from tests.viz.models import OffsetNet

    torch.manual_seed(0)
    graph = graphopt.capture(OffsetNet().eval(), torch.randn(1, 1, 8, 8))
    payload = pipeline_payload(graph, "O2")
    fold = next(p for p in payload["passes"] if p["record"]["name"] == "fold_constants")
    assert fold["diff"]["folded"] == ["mul_folded"] and set(fold["diff"]["removed"]) == {"offset", "mul"}
    open_page(browser, write(payload, pages / "fold.html"))
    click_step(browser, "fold_constants")
    colours = browser.execute_script("return GraphoptScene.CHANGE_COLORS")
    # Constants hidden: the new constant's user carries the mark.
    assert box(browser, "mul_folded") is None
    assert box(browser, "add")["badge"] == "folded" and box(browser, "add")["outline"] == colours["folded"]
    assert box(browser, "relu")["badge"] is None and box(browser, "conv")["badge"] is None
    browser.find_element("id", "show-constants").click()  # shown: the constant itself
    assert box(browser, "mul_folded")["badge"] == "folded"
    assert box(browser, "mul_folded")["outline"] == colours["folded"]
    side(browser, "before")
    assert box(browser, "mul")["badge"] == "removed" and box(browser, "offset")["badge"] == "removed"
    assert box(browser, "mul_folded") is None
    assert pass_report(browser)["folded"] == "1 mul_folded"


# -- the timeline's layout ---------------------------------------------------------------------
def test_before_after_toggle_does_not_cover_the_timeline(browser, resnet_o2, tmp_path):
    """At a laptop's window size the O2 timeline scrolls; wherever it is scrolled to, no step shows
    under the Before/After toggle, and the toggle's buttons are the ones a click reaches."""
    path, _ = resnet_o2
    size = browser.get_window_size()
    browser.set_window_size(1280, 800)
    try:
        open_page(browser, path)
        browser.save_screenshot(str(tmp_path / "timeline.png"))
        assert browser.execute_script(
            "const bar = document.getElementById('timeline');"
            " return [bar, ...bar.querySelectorAll('*')].some((e) => e.scrollWidth > e.clientWidth)"
        ), "the timeline is expected to scroll at this size"
        for where in ("initial", 0, 500, 1e9):
            covered = browser.execute_script(
                """
                const bar = document.getElementById("timeline"), where = arguments[0];
                if (where !== "initial") {
                  for (const e of [bar, ...bar.querySelectorAll("*")]) if (e.scrollWidth > e.clientWidth) e.scrollLeft = where;
                }
                const sides = bar.querySelector(".sides").getBoundingClientRect();
                const covered = [];
                for (const el of bar.querySelectorAll(".step, .arrow, .label")) {
                  let [l, t, r, b] = (({ left, top, right, bottom }) => [left, top, right, bottom])(el.getBoundingClientRect());
                  for (let a = el.parentElement; a; a = a.parentElement) { // what shows: clipped by scrolling ancestors
                    if (getComputedStyle(a).overflowX !== "visible") {
                      const c = a.getBoundingClientRect();
                      l = Math.max(l, c.left); t = Math.max(t, c.top); r = Math.min(r, c.right); b = Math.min(b, c.bottom);
                    }
                    if (a === bar) break;
                  }
                  if (r - l < 0.5 || b - t < 0.5) continue; // scrolled out of sight
                  if (l < sides.right - 0.5 && r > sides.left + 0.5 && t < sides.bottom && b > sides.top) {
                    covered.push(el.textContent);
                  }
                }
                const hits = [...bar.querySelectorAll(".sides button")].map((button) => {
                  const r = button.getBoundingClientRect();
                  return document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2) === button;
                });
                return [covered, hits];
                """,
                where,
            )
            assert covered == [[], [True, True]], f"scrolled to {where}: {covered}"
        active = browser.find_element("css selector", "#timeline .step.active")
        assert active.text.startswith("mark_fusion_groups") and active.is_displayed()
    finally:
        browser.set_window_size(size["width"], size["height"])
