"""Many streams per model call: one batched call per chunk for N independent streams.

:class:`BatchedStepServer` keeps every stream's state tensors in one preallocated array per
state tensor (``[max_streams, ...]``, a slot per stream). A call gathers the slots of the
streams in it, stacks their chunks on axis 0, runs the graph once, and scatters each stream's
new state back into its slot: the result for each stream is what the same graph gives that
stream run alone (a test checks it under ONNX Runtime CPU). Streams whose chunks differ in
frames in one call are grouped, one model call per group.

It takes any session with ONNX Runtime's interface (``get_inputs``, ``run``) whose graph has a
symbolic batch axis: ``voxflip build-trt MODEL --onnx-only --max-streams N`` writes such graphs
(``trt/model.step.onnx``; the exporter writes batch 1), and :func:`open_batched_step` opens
the right one: the TensorRT engine built for this machine, else ONNX Runtime with providers
TensorRT -> CUDA -> CPU (:mod:`.trt_step`).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactMismatchError, ConfigError
from .onnx_step import MAX_MANIFEST_BYTES, check_manifest
from .trt_step import open_graph

log = logging.getLogger(__name__)

#: the most streams one server holds
MAX_STREAMS = 4096


class BatchedStepServer:
    """N independent streams of one streaming graph, sharing one model call per chunk.

    Args:
        session: a session (ONNX Runtime's, or :class:`~.trt_step.TrtSession`) of a graph with
            inputs ``frame_inputs`` ``[B, ...]`` and ``state_in.<name>``, outputs ``n_outputs``
            results then ``state_out.<name>`` in ``state_names`` order; axis 0 symbolic.
        state_names, state_shapes: the state tensors (the manifest's, batch 1 first).
        max_streams: the slots, 1..MAX_STREAMS (a TensorRT engine: at most its profile's max batch).
        n_outputs: the results before the state outputs (4 for a flow step graph).

    Raises:
        ArtifactMismatchError: the graph's batch axis is fixed.
    """

    def __init__(self, session: Any, state_names: list[str], state_shapes: list[tuple[int, ...]], *,
                 max_streams: int, n_outputs: int = 4) -> None:
        if not isinstance(max_streams, int) or not 1 <= max_streams <= MAX_STREAMS:
            raise ConfigError(f"max_streams={max_streams!r} must be a whole number in 1..{MAX_STREAMS}")
        fixed = [i.name for i in session.get_inputs() if isinstance(i.shape[0], int) and i.shape[0] > 0]
        if fixed and max_streams > 1:
            raise ArtifactMismatchError(f"the graph's input {fixed[0]!r} has a fixed batch of "
                                        f"{session.get_inputs()[0].shape[0]}; open the batch-axis graph that "
                                        f"voxflip build-trt MODEL --onnx-only --max-streams {max_streams} writes")
        self.session = session
        self.state_names = list(state_names)
        self.n_outputs = n_outputs
        self.max_streams = max_streams
        self.frame_inputs = [i.name for i in session.get_inputs() if not i.name.startswith("state_in.")]
        self._state = {n: np.zeros((max_streams, *s[1:]), np.float32)
                       for n, s in zip(state_names, state_shapes, strict=True)}
        self._slots: dict[int, int] = {}
        self._free = list(range(max_streams - 1, -1, -1))
        self._ids = itertools.count()
        self.calls = 0

    @property
    def streams(self) -> list[int]:
        return sorted(self._slots)

    def open(self) -> int:
        """A new stream (zero state); returns its id. Raises ConfigError when all slots are taken."""
        if not self._free:
            raise ConfigError(f"all {self.max_streams} stream slots are in use; close a stream or open the server "
                              "with a larger max_streams")
        stream = next(self._ids)
        self._slots[stream] = self._free.pop()
        self.reset(stream)
        return stream

    def _slot(self, stream: int) -> int:
        if stream not in self._slots:
            raise ValueError(f"stream {stream!r} is not open; open streams: {self.streams[:10]}")
        return self._slots[stream]

    def reset(self, stream: int) -> None:
        """The stream starts over (zero state), as if new."""
        slot = self._slot(stream)
        for array in self._state.values():
            array[slot] = 0.0

    def close(self, stream: int) -> None:
        self._free.append(self._slot(stream))
        del self._slots[stream]

    def state(self, stream: int) -> dict[str, np.ndarray]:
        """A copy of the stream's state tensors (batch 1), as a separate stream's would be."""
        slot = self._slot(stream)
        return {n: a[slot : slot + 1].copy() for n, a in self._state.items()}

    def step(self, chunks: Mapping[int, Mapping[str, np.ndarray]]) -> dict[int, list[np.ndarray]]:
        """One chunk for each stream in ``chunks``: stream id -> {input name: array ``[1, ...]``}.

        Returns:
            stream id -> the graph's first ``n_outputs`` outputs for that stream (``[1, ...]``), as
            ``session.run`` gives for the stream alone. States advance for these streams only.
        """
        groups: dict[tuple, list[int]] = {}
        for stream, feeds in chunks.items():
            self._slot(stream)
            missing = [n for n in self.frame_inputs if n not in feeds]
            if missing:
                raise ValueError(f"stream {stream}: input {missing[0]!r} is missing; the graph takes "
                                 f"{', '.join(self.frame_inputs)}")
            key = tuple(np.shape(feeds[n]) for n in self.frame_inputs)
            if any(len(s) == 0 or s[0] != 1 for s in key):
                raise ValueError(f"stream {stream}: each input is one stream's [1, ...] array, got shapes {key}")
            groups.setdefault(key, []).append(stream)
        results: dict[int, list[np.ndarray]] = {}
        for streams in groups.values():
            slots = np.array([self._slots[s] for s in streams])
            feeds = {n: np.concatenate([np.asarray(chunks[s][n], np.float32) for s in streams]) for n in self.frame_inputs}
            feeds.update({f"state_in.{n}": self._state[n][slots] for n in self.state_names})
            out = self.session.run(None, feeds)
            self.calls += 1
            for k, name in enumerate(self.state_names):
                self._state[name][slots] = out[self.n_outputs + k]
            for j, stream in enumerate(streams):
                results[stream] = [o[j : j + 1] for o in out[: self.n_outputs]]
        return results


def open_batched_step(model: str | Path, *, max_streams: int, threads: int = 1,
                      allow_trt: bool = True) -> BatchedStepServer:
    """A :class:`BatchedStepServer` on a model's batch-axis step graph (from ``voxflip build-trt``).

    Args:
        model: the exported model's ``*.manifest.json`` (with a ``trt`` section).
        max_streams: slots; at most the manifest's ``trt.max_streams`` when a TensorRT engine runs.

    Raises:
        ArtifactMismatchError: the manifest has no ``trt`` section (run ``voxflip build-trt``).
    """
    path = Path(model)
    if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"model manifest {str(path)!r} does not exist or is too large")
    try:
        manifest = check_manifest(json.loads(path.read_text(encoding="utf-8")), path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactMismatchError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    graph = manifest.get("trt", {}).get("graphs", {}).get("step")
    if graph is None:
        raise ArtifactMismatchError(f"{path}: no batch-axis step graph; write one: voxflip build-trt {path.parent} "
                                    f"--onnx-only --max-streams {max_streams}")
    session, what = open_graph(path, manifest, "step", graph["file"], threads, allow_trt=allow_trt)
    if what.startswith("TensorRT") and max_streams > manifest["trt"]["max_streams"]:
        raise ConfigError(f"max_streams={max_streams} is more than the engine's profile allows "
                          f"({manifest['trt']['max_streams']}); rebuild: voxflip build-trt {path.parent} "
                          f"--max-streams {max_streams}")
    log.info("batched flow step %s: %d streams on %s", path.name, max_streams, what)
    names = [s["name"] for s in manifest["state"]]
    shapes = [tuple(s["shape"]) for s in manifest["state"]]
    return BatchedStepServer(session, names, shapes, max_streams=max_streams)
