"""The explorer in a real browser: headless Chromium loads the page from file:// and a person's
steps work: search, click a node, read its shape; expand a module; switch before/after a pass."""

from __future__ import annotations

import pytest
import torch

import graphopt
from tests.viz.browsing import click_canvas_at, open_page, severe_logs
from tests.viz.png import read_png
from tests.viz.test_visualize import do_nothing, drop_dropout, mark_convs

pytestmark = pytest.mark.browser


def test_search_click_and_details(browser, resnet_page, tmp_path):
    open_page(browser, resnet_page)
    assert severe_logs(browser) == []
    # ResNet opens with its residual blocks collapsed into boxes.
    assert browser.execute_script("return window.__graphopt.groupScreenPosition('layers.1')") is not None
    assert browser.execute_script("return window.__graphopt.screenPosition('layers_1_conv1')") is None

    search = browser.find_element("id", "search")
    search.send_keys("layers_1_conv1")
    result = browser.find_element("css selector", "#search-results .result")
    assert result.get_attribute("data-node") == "layers_1_conv1"
    result.click()  # reveals the node: its block opens and it is selected
    assert "layers_1_conv1" in browser.find_element("id", "details").text
    browser.execute_script("window.__graphopt.clearSelection()")
    assert "layers_1_conv1" not in browser.find_element("id", "details").text
    x, y = browser.execute_script("return window.__graphopt.screenPosition('layers_1_conv1')")
    click_canvas_at(browser, x, y)
    details = browser.find_element("id", "details").text
    assert "layers_1_conv1" in details and "1×16×16×16" in details, details
    assert "weight 16×8×3×3" in details  # parameter shapes

    shot = tmp_path / "resnet.png"
    browser.save_screenshot(str(shot))
    assert_not_blank(shot)
    assert severe_logs(browser) == []


def test_clicking_a_module_box_expands_it(browser, resnet_page):
    open_page(browser, resnet_page)
    boxes = browser.execute_script("return window.__graphopt.visibleBoxes()")
    x, y = browser.execute_script("return window.__graphopt.groupScreenPosition('layers.2')")
    click_canvas_at(browser, x, y)
    assert browser.execute_script("return window.__graphopt.groupScreenPosition('layers.2')") is None
    assert browser.execute_script("return window.__graphopt.screenPosition('layers_2_conv2')") is not None
    assert browser.execute_script("return window.__graphopt.visibleBoxes()") > boxes
    assert "BasicBlock" in browser.find_element("id", "details").text
    # Clicking the open module's title bar folds it back into one box.
    x, y = browser.execute_script("return window.__graphopt.frameTitlePosition('layers.2')")
    click_canvas_at(browser, x, y)
    assert browser.execute_script("return window.__graphopt.groupScreenPosition('layers.2')") is not None
    assert browser.execute_script("return window.__graphopt.visibleBoxes()") == boxes


def test_layout_keeps_boxes_apart_and_edges_downward(browser, resnet_page):
    open_page(browser, resnet_page)
    browser.execute_script("window.__graphopt.expandAll()")
    overlaps, upward = browser.execute_script(
        """
        const scene = window.__graphopt.app.scene;
        let overlaps = 0, upward = 0;
        for (const row of scene.layout.rows) {
          const boxes = row.map((i) => scene.boxes[i]).sort((a, b) => a.x - b.x);
          for (let k = 1; k < boxes.length; k++) if (boxes[k].x < boxes[k - 1].x + boxes[k - 1].w) overlaps++;
        }
        for (const r of scene.routes) if (scene.boxes[r.to].y <= scene.boxes[r.from].y) upward++;
        return [overlaps, upward];
        """
    )
    assert overlaps == 0 and upward == 0


def test_pipeline_before_and_after(browser, tmp_path):
    from tests.viz.models import tiny_graph

    passes = [drop_dropout, do_nothing, mark_convs]
    path = graphopt.visualize(tiny_graph(), tmp_path / "pipeline.html", passes=passes)
    open_page(browser, path)
    steps = [e.text.split("\n")[0] for e in browser.find_elements("css selector", "#timeline .step")]
    assert steps == ["captured", "drop_dropout", "do_nothing", "mark_convs"]
    browser.find_elements("css selector", "#timeline .step")[2].click()  # its graph is stored once, shared
    assert browser.execute_script("return window.__graphopt.screenPosition('fc')") is not None
    browser.find_elements("css selector", "#timeline .step")[1].click()
    browser.find_element("css selector", "#timeline [data-side=before]").click()
    report = browser.find_element("id", "pass-report").text
    assert "drop_dropout" in report and "before" in report and "removed" in report
    # Before the pass the dropout node is there, marked removed; after it, it is gone.
    assert browser.execute_script("return window.__graphopt.screenPosition('drop')") is not None
    badge = browser.execute_script("return window.__graphopt.app.scene.boxes.find((b) => b.node === 'drop').badge")
    assert badge == "removed"
    browser.find_element("css selector", "#timeline [data-side=after]").click()
    assert browser.execute_script("return window.__graphopt.screenPosition('drop')") is None
    # Toggling before/after keeps the selected node where it is on screen, so the two line up.
    browser.execute_script("window.__graphopt.reveal('fc')")
    where = browser.execute_script("return window.__graphopt.screenPosition('fc')")
    for side in ("before", "after"):
        browser.find_element("css selector", f"#timeline [data-side={side}]").click()
        moved = browser.execute_script("return window.__graphopt.screenPosition('fc')")
        assert abs(moved[0] - where[0]) < 1 and abs(moved[1] - where[1]) < 1
    assert severe_logs(browser) == []


def test_page_makes_no_network_requests(browser, resnet_page):
    open_page(browser, resnet_page)
    resources = browser.execute_script("return performance.getEntriesByType('resource').map((r) => r.name)")
    assert resources == []


def assert_not_blank(png_path):
    """Drawn boxes, edges and text give the canvas many colours and a spread of brightness;
    a blank or single-colour page has one colour and no spread."""
    width, height, channels, rows = read_png(png_path)
    canvas_rows = rows[height // 8 : height : 4]  # below the toolbar, every 4th row
    pixels = [tuple(row[x : x + 3]) for row in canvas_rows for x in range(0, width * channels // 2, channels * 2)]
    brightness = torch.tensor([sum(p) / 3 for p in pixels])
    assert len(set(pixels)) > 20 and brightness.std() > 5, "the screenshot is blank"


def test_layout_invariants_on_random_graphs(browser, resnet_page):
    """GraphoptLayout on random DAGs: finite coordinates, no two boxes of a layer overlap, every
    edge runs downward, and each edge's route starts at its producer and ends at its consumer."""
    import random

    open_page(browser, resnet_page)
    for seed in range(12):
        rng = random.Random(seed)
        count = rng.randint(2, 300)
        edges = [[rng.randrange(v), v] for v in range(1, count) for _ in range(rng.choice((1, 1, 2, 3)))]
        edges += [[rng.randrange(count), rng.randrange(count)] for _ in range(count // 10)]  # some go backwards
        widths = [rng.randint(60, 250) for _ in range(count)]
        problems = browser.execute_script(
            """
            const [count, widths, edges] = arguments;
            const heights = widths.map(() => 42);
            const L = GraphoptLayout.layout(count, widths, heights, edges);
            const problems = [];
            for (let v = 0; v < count; v++) if (!isFinite(L.x[v]) || !isFinite(L.top[v])) problems.push(`node ${v} not placed`);
            for (const row of L.rows) {
              const sorted = [...row].sort((a, b) => L.x[a] - L.x[b]);
              for (let k = 1; k < sorted.length; k++) {
                const a = sorted[k - 1], b = sorted[k];
                if (L.x[a] + widths[a] / 2 > L.x[b] - widths[b] / 2 + 1e-6) problems.push(`${a} overlaps ${b}`);
              }
            }
            L.routes.forEach((r) => {
              const [u, v] = edges[r.edge];
              if (u === v) return;
              const [top, bottom] = u < v ? [u, v] : [v, u];
              if (L.top[bottom] <= L.top[top]) problems.push(`edge ${u}->${v} does not run down`);
              const p = r.pts, n = p.length;
              if (Math.abs(p[0] - L.x[top]) > 1e-6 || Math.abs(p[n - 2] - L.x[bottom]) > 1e-6) problems.push(`route ${u}->${v} detached`);
            });
            return problems.slice(0, 5);
            """,
            count,
            widths,
            edges,
        )
        assert problems == [], f"seed {seed}: {problems}"
