"""Model backends: run exported models (ONNX Runtime here; TensorRT through trt_build's plans)."""
