"""Lowering graphopt's IR to a TVM Relax module: the torch frontend plus graphopt's own converters.

``lower`` drives TVM's ExportedProgram importer; ``converters`` holds the ATen converters TVM lacks or
gets partly wrong; ``quantized`` turns graphopt's QDQ ops into integer compute; ``safe_indices`` makes
every gather read in bounds with PyTorch's meaning of negative indices. Target-independent.
"""
