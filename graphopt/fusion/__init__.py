"""Model fusion: several models run as one graph that returns the ensemble's answer.

``fuse_models`` captures every member, copies each member's graph into one ``torch.fx`` GraphModule
on shared (or per-member) inputs, merges sub-graphs that compute the same thing with the same
weights (``merge``), runs same-architecture members side by side as one wider model where their
layers allow it (``horizontal``), and combines the outputs inside the graph.

>>> graph, report = graphopt.fuse_models([cnn_a, cnn_b, cnn_c], torch.randn(1, 1, 28, 28), combine="mean")
>>> compiled = graphopt.compile(graph, graph.example_inputs, out_dir="out/ensemble")
"""

from __future__ import annotations

from graphopt.fusion.build import COMBINES, fuse_models
from graphopt.fusion.eager import EagerEnsemble, combine_outputs
from graphopt.fusion.report import FusionReport, MemberInfo

__all__ = ["COMBINES", "EagerEnsemble", "FusionReport", "MemberInfo", "combine_outputs", "fuse_models"]
