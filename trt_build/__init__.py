"""ONNX -> TensorRT engine building (profiles, precision, cache)."""
