"""Torch models (training side). The engine runs them through ONNX, never through torch."""
