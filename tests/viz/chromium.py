"""Headless Chromium under selenium, set up for this closed network (used by tests and benchmarks).

Without the background-networking flags Chromium tries to reach Google's services and its
connections are refused; a fresh --user-data-dir keeps runs independent.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--window-size=1400,900",
)


def missing() -> list[str]:
    """What is not installed of Chromium and its WebDriver (scripts/setup_browser.sh installs both)."""
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]


def start():
    """A selenium WebDriver for headless Chromium that records the browser console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="graphopt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.graphopt_profile = profile
    return driver


def stop(driver) -> None:
    """Quit the browser and remove its throw-away profile directory."""
    driver.quit()
    shutil.rmtree(driver.graphopt_profile, ignore_errors=True)


def open_page(driver, path: Path, fragment: str = "", timeout: float = 20.0) -> float:
    """Load a graphopt page and wait until it is interactive; returns window.__graphoptReady (ms)."""
    driver.get(Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    deadline = time.monotonic() + timeout
    while True:
        ready = driver.execute_script("return window.__graphoptReady")
        if ready:
            return float(ready)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not become interactive within {timeout} s")
        time.sleep(0.02)
