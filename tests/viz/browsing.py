"""Helpers the browser tests share: start Chromium (or skip), load a page, read the console, click
the canvas, and read what the page exposes on ``window.__graphopt``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.viz import chromium


def start_chromium():
    """A headless Chromium under selenium, or a clean skip (a failure in CI, which installs it)."""
    absent = chromium.missing()
    if absent:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(absent)} missing in CI: scripts/setup_browser.sh installs them")
        pytest.skip(f"{', '.join(absent)} not installed (run scripts/setup_browser.sh as root)")
    pytest.importorskip("selenium")
    return chromium.start()


def open_page(driver, path: Path, fragment: str = "") -> None:
    """Load a page afresh (a new fragment on the page already shown would not reload it)."""
    if fragment:
        driver.get("about:blank")
    chromium.open_page(driver, path, fragment, timeout=10)


def severe_logs(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def click_canvas_at(driver, x, y):
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "canvas")
    size = canvas.size  # move_to_element_with_offset measures from the element's centre
    ActionChains(driver).move_to_element_with_offset(
        canvas, x - size["width"] / 2, y - size["height"] / 2
    ).click().perform()


def box(driver, name):
    """The scene's box for node `name` (colours, change badge, search glow), or None if not shown."""
    return driver.execute_script(
        "const i = window.__graphopt.app.boxOfNode.get(arguments[0]);"
        " return i === undefined ? null : window.__graphopt.app.scene.boxes[i];",
        name,
    )


def group_box(driver, path):
    """The scene's box for collapsed module `path`, or None if it is open or not shown."""
    return driver.execute_script(
        "const i = window.__graphopt.app.boxOfGroup.get(arguments[0]);"
        " return i === undefined ? null : window.__graphopt.app.scene.boxes[i];",
        path,
    )


def view(driver):
    """The renderer's view transform {scale, tx, ty}: screen = graph * scale + (tx, ty)."""
    return driver.execute_script("return {...window.__graphopt.renderer.view}")


def next_frame(driver):
    """Wait until the page has drawn the frame a change requested (drawing runs on requestAnimationFrame)."""
    driver.execute_async_script(
        "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));"
    )
