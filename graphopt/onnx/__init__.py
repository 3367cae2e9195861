"""ONNX in and out: import (``io.load_onnx``: onnx2torch plus graphopt's own converters), export
(``io.export_onnx``, QDQ for int8), and the converters, one module per family of ops."""
