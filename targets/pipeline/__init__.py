"""Build orchestration: graph -> Relax (lowering) -> the shared Relax pipeline -> a written artifact.

``builder`` is what ``graphopt.targets.build`` runs; ``relax_pipeline`` is the TVM pass pipeline every
target shares (with the target's schedule step in the middle); ``artifact`` writes the library and
``manifest.json`` atomically.
"""
