"""voxflip: streaming singing <-> speech conversion, live and offline.

The front door. Typical use::

    from voxflip import make_converter, render_file, load_melody
    conv = make_converter("singing", melody=load_melody("tune.mid"))
    render_file("speech.wav", "sung.wav", conv)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_melody", "make_converter", "render_file", "Streamer"]


def __getattr__(name: str):  # lazy: `import voxflip` stays cheap for the CLI
    if name == "make_converter":
        from voxflip.engine.registry import make_converter

        return make_converter
    if name == "render_file":
        from .render import render_file

        return render_file
    if name == "load_melody":
        from voxflip.engine.melody import load_melody

        return load_melody
    if name == "Streamer":
        from voxflip.streaming.streamer import Streamer

        return Streamer
    raise AttributeError(f"module 'voxflip' has no attribute {name!r}")
