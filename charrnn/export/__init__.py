"""Exporting a model to run elsewhere (ONNX, a web page)."""
