"""Lowering graphopt's IR to TVM and building deployable artifacts. The only package importing tvm."""
