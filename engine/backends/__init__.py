"""Model backends: run exported models without torch.

- :mod:`.runtime`: which ONNX Runtime distribution is installed (``cpu`` or ``gpu`` extra), with
  one clear error when none is;
- :mod:`.onnx_step`: the exported S2S flow model's step, encoder and decoder graphs on ONNX Runtime.

TensorRT engines are built by ``voxflip.trt_build`` (not yet: see its issue).
"""
