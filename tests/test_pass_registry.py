"""The pass registry: the decorator's declaration, and plugins from other packages via entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import graphopt
from graphopt import pass_api
from graphopt.errors import GraphoptError, UnknownPassError
from graphopt.pass_api import PassResult, get_pass, list_passes, register_pass, unregister_pass

FIXTURE = Path(__file__).parent / "plugin_fixture"
#: Offline and into a directory of its own: the test never changes the virtualenv.
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]


def test_the_decorator_declares_name_description_options_and_needs():
    @register_pass("t_scale", requires=("eval_mode", "calibration_data"), reports=("scaled",), tolerance=1e-3)
    def scale(graph, *, factor: float = 2.0, calibration_data=None):
        """Scale something.

        Longer explanation that is not part of the one-line description.
        """
        return PassResult(graph, changed=False)

    try:
        info = get_pass("t_scale")
        assert info.description == "Scale something."
        assert info.options == {"factor": 2.0}  # context names are not options
        assert info.requires == ("eval_mode", "calibration_data") and info.reports == ("scaled",)
        assert info.tolerance == 1e-3 and info.origin == __name__
        assert info in list_passes()
        assert [p.name for p in list_passes()] == sorted(p.name for p in list_passes())
    finally:
        unregister_pass("t_scale")
    with pytest.raises(UnknownPassError):
        get_pass("t_scale")


def test_a_second_pass_with_the_same_name_is_refused_unless_replacing():
    def first(graph):
        return PassResult(graph, changed=False)

    def second(graph):
        return PassResult(graph, changed=True)

    register_pass("t_twice")(first)
    try:
        register_pass("t_twice")(first)  # re-running the same decorator (a reload) is fine
        with pytest.raises(GraphoptError, match="already registered"):
            register_pass("t_twice")(second)
        register_pass("t_twice", replace=True)(second)
        assert get_pass("t_twice").function is second
    finally:
        unregister_pass("t_twice")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """tests/plugin_fixture pip-installed into a temporary directory (the venv is left alone)."""
    target = tmp_path_factory.mktemp("plugin_site")
    build = tmp_path_factory.mktemp("plugin_build")
    # Build from a copy: setuptools writes egg-info and build/ next to the sources.
    source = build / "plugin_fixture"
    subprocess.run(["cp", "-r", str(FIXTURE), str(source)], check=True)
    result = subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(source)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return target


@pytest.fixture
def plugin_on_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setattr(pass_api, "_discovered", False)
    yield
    unregister_pass("plugin_remove_identity")
    for name in [m for m in sys.modules if m.startswith("graphopt_plugin_fixture")]:
        del sys.modules[name]


def test_an_installed_plugin_pass_is_discovered_and_runs(plugin_on_path):
    info = get_pass("plugin_remove_identity")
    assert info.origin == "graphopt_plugin_fixture.remove_identity"
    assert info.options == {"keep_first": False}
    model = nn.Sequential(nn.Linear(4, 4), nn.Identity(), nn.ReLU(), nn.Identity()).eval()
    x = torch.randn(2, 4)
    graph = graphopt.capture(model, x)
    optimized, report = graphopt.optimize(graph, "plugin_remove_identity", verify=True)
    assert report.passes[0].details == {"removed": 2}
    assert [optimized.info(n).kind for n in optimized.compute_nodes()] == ["linear", "relu"]
    assert torch.equal(optimized(x), model(x))


def test_the_cli_lists_and_runs_the_plugin_pass(plugin_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), str(Path(__file__).parent.parent)]))
    cli = [sys.executable, "-m", "graphopt.cli"]
    listed = subprocess.run([*cli, "passes", "--json"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    passes = {p["name"]: p for p in json.loads(listed.stdout)["passes"]}
    assert passes["plugin_remove_identity"]["options"] == {"keep_first": False}
    assert passes["plugin_remove_identity"]["origin"] == "graphopt_plugin_fixture.remove_identity"

    model_file = tmp_path / "model.py"
    model_file.write_text(
        "from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Linear(4, 4), nn.Identity(), nn.ReLU())\n"
    )
    ran = subprocess.run(
        [
            *cli,
            "optimize",
            f"{model_file}:make",
            "--input-shape",
            "2x4",
            "--passes",
            "plugin_remove_identity",
            "--verify",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert [(p["name"], p["details"]) for p in report["passes"]] == [("plugin_remove_identity", {"removed": 1})]
