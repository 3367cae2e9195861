"""Fixtures the visualizer tests share: one headless Chromium for the session, the console-error
check every browser test ends with, and the ResNet page several tests read."""

from __future__ import annotations

import pytest
import torch

import graphopt
from tests.viz import chromium
from tests.viz.browsing import severe_logs, start_chromium


@pytest.fixture(scope="session")
def browser():
    driver = start_chromium()
    yield driver
    chromium.stop(driver)


@pytest.fixture(autouse=True)
def no_console_errors(request):
    """Every browser test ends with an error-free console (the log is read, and so cleared, here)."""
    if request.node.get_closest_marker("browser") is None:
        yield
        return
    driver = request.getfixturevalue("browser")
    severe_logs(driver)  # drop what an earlier test left
    yield
    assert severe_logs(driver) == []


@pytest.fixture(scope="session")
def resnet_graph():
    from samples.resnet import resnet_small

    return graphopt.capture(resnet_small().eval(), torch.randn(1, 3, 32, 32))


@pytest.fixture(scope="session")
def resnet_page(tmp_path_factory, resnet_graph):
    return graphopt.visualize(resnet_graph, tmp_path_factory.mktemp("viz") / "resnet.html")
