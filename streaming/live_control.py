"""What the live worker does with run-time parameter changes (OSC, presets).

A :class:`LiveController` owns the live signal chain -- pre-effects, the
converter of the current mode, post-effects (a :class:`~.effects.Chain`) -- and
the constant-rate :class:`~.realtime.RealtimeStreamer` around it. The worker
calls :meth:`LiveController.apply` between blocks; a bad value raises a
``ConfigError`` that the worker logs and ignores, so nothing reaches the
audio thread.

- ``mode``: ``speech`` / ``singing`` swap the converter (the new one starts on
  the current input; its output arrives exactly when the old one's runs out, so
  the timing does not move); ``bypass`` crossfades to the delayed dry input.
- ``mix``, ``gain``: ramped by the RealtimeStreamer (no clicks).
- ``note``: to the singing converter (live notes); ``transpose``: to both;
  ``duration``: to the speech converter, if it shortens vowels. Which converter takes which
  parameter is the registry's ``ConverterSpec.params``; any other is refused with a message.
- ``fx``: a parameter of a named plugin in the chain; ``preset``: rebuild the
  chain's effects from a preset *name* (bundled, or in the user preset folder;
  never a path, never the working directory -- see docs/security.md).

Latency is declared once, when the engine starts, from the converter of the starting
mode. The WORLD converters of both modes share one chunk grid, and so one latency; a
flow converter has another (its own hop, chunk and lookahead), so a swap between a flow
and a WORLD converter moves the output by the difference. A preset whose plugins hold
back audio (a look-ahead limiter) shifts the output by that much when it is loaded
mid-stream.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from voxflip.engine.converters.base import Converter
from voxflip.engine.direction import Direction
from voxflip.engine.errors import ConfigError
from voxflip.engine.params import ParamChange
from voxflip.engine.registry import spec_of

from .effects import Chain
from .presets import find_preset, is_preset_path, load_preset
from .realtime import RealtimeStreamer

log = logging.getLogger(__name__)

MODES = (*(d.value for d in Direction), "bypass")


class _ChainProcessor:
    """The active Chain as a RealtimeStreamer processor; chains are swapped between blocks.

    A new chain needs a converter's worth of input before it answers. So that a swap
    leaves no gap, the old chain keeps running until it has answered for every sample
    that came in before the swap; then the new chain's output takes over, crossfaded
    over ``fade`` samples. This needs both converters to keep time (output sample i
    answers input sample i); otherwise the swap is immediate and the RealtimeStreamer
    fills the wait with silence.
    """

    def __init__(self, chain: Chain, latency_s: float, fade: int) -> None:
        self.chain = chain
        self._latency_s = latency_s
        self.fade = max(1, fade)
        self.pending: list[tuple[str, object]] = []  # converter parameters for a chain not started yet
        self._in = 0       # input samples fed to the current chain
        self._out = 0      # output samples it has produced
        self._old: Chain | None = None
        self._old_in = 0
        self._old_out = 0
        self._splice = 0   # old-chain output index where the new chain's output starts
        self._old_tail = np.zeros(0, np.float32)
        self._new_buf = np.zeros(0, np.float32)

    @property
    def latency_s(self) -> float:
        return self._latency_s

    @property
    def swapping(self) -> bool:
        return self._old is not None

    @property
    def started(self) -> bool:
        """Whether the current chain has processed audio (before that, its first call resets it)."""
        return self._in > 0

    def swap(self, chain: Chain) -> None:
        keeps_time = (self.chain.converter is not None and self.chain.converter.time_preserving
                      and chain.converter is not None and chain.converter.time_preserving)
        if keeps_time and self._old is None:
            self._old, self._old_in, self._old_out = self.chain, self._in, self._out
            self._splice = self._in
            self._old_tail = np.zeros(0, np.float32)
            self._new_buf = np.zeros(0, np.float32)
        self.chain = chain
        self._in = self._out = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        out = self.chain.process(block)
        self._in += block.shape[0]
        self._out += out.shape[0]
        if self.pending and self.chain.streamer is not None:
            converter, state = self.chain.converter, self.chain.streamer.state
            for name, value in self.pending:
                converter.set_param(state, name, value)
            self.pending.clear()
        if self._old is None:
            return out
        return self._splice_block(block, out)

    def _splice_block(self, block: np.ndarray, new: np.ndarray) -> np.ndarray:
        old = self._old.process(block)
        start = self._old_out
        self._old_out += old.shape[0]
        before = old[: max(0, min(old.shape[0], self._splice - start))]
        lo = max(0, self._splice - start)
        hi = max(lo, min(old.shape[0], self._splice + self.fade - start))
        self._old_tail = np.concatenate([self._old_tail, old[lo:hi]])
        self._new_buf = np.concatenate([self._new_buf, new])
        parts = [before]
        if self._old_tail.shape[0] >= self.fade and self._new_buf.shape[0] >= self.fade:
            ramp = (np.arange(self.fade, dtype=np.float32) + 0.5) / self.fade
            parts.append(self._old_tail[: self.fade] * (1.0 - ramp) + self._new_buf[: self.fade] * ramp)
            parts.append(self._new_buf[self.fade :])
            self._old = None
            self._old_tail = self._new_buf = np.zeros(0, np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def reset(self) -> None:
        self._old = None
        self._in = self._out = 0
        self.chain.reset()


class LiveController:
    """The live chain and its run-time parameters (see the module docstring).

    Args:
        converters: the converter per mode (``"speech"`` and/or ``"singing"``).
        mode: the starting mode.
        sample_rate: the device rate.
        preset: the starting effect preset: a name, or a path given by the user (the
            command line's ``--fx``), or None.
        preset_dir: the user preset folder that preset *names* are looked up in, beside
            the bundled presets; default :func:`~.presets.user_preset_dir`.
        allow_plugins: let presets load VST3/AU plugin files (a plugin is code).

    Raises:
        ConfigError: no converter for ``mode``; a bad starting preset.
    """

    def __init__(self, converters: dict[str, Converter], mode: str, sample_rate: int, *,
                 preset: str | None = None, preset_dir: str | Path | None = None,
                 allow_plugins: bool = False) -> None:
        if mode not in converters:
            raise ConfigError(f"mode {mode!r} has no converter; available: {', '.join(converters)}")
        self.converters = converters
        self.sample_rate = int(sample_rate)
        self.preset_dir = Path(preset_dir) if preset_dir is not None else None
        self.allow_plugins = bool(allow_plugins)
        self.mode = mode
        self.preset = preset
        self._sticky: dict[str, dict[str, object]] = {m: {} for m in converters}  # re-applied after a swap
        chain = self._build(converters[mode], preset)
        self._processor = _ChainProcessor(chain, chain.latency_s, fade=round(0.005 * self.sample_rate))
        self.realtime = RealtimeStreamer(self._processor, self.sample_rate)

    @property
    def chain(self) -> Chain:
        return self._processor.chain

    def _build(self, converter: Converter, preset: str | None) -> Chain:
        if preset is None:
            chain = Chain([converter], sample_rate=self.sample_rate)
        else:
            chain = load_preset(self._preset_path(preset), converter=converter, allow_plugins=self.allow_plugins)
            chain.sample_rate = self.sample_rate
        return chain

    def _preset_path(self, preset: str) -> Path:
        """The file of the starting preset (a name, or the user's path) or of a later one (a name)."""
        if is_preset_path(preset):
            return Path(preset)
        return find_preset(preset, self.preset_dir)

    # -- the worker's entry point --------------------------------------------------------------------
    def apply(self, change: ParamChange) -> None:
        """Apply one change; raises ConfigError (logged and ignored by the worker) when it cannot."""
        name, value = change.name, change.value
        rt = self.realtime
        if name == "mode":
            self._set_mode(str(value))
        elif name == "mix":
            rt.set_mix(float(value))
        elif name == "gain":
            rt.set_gain_db(float(value))
        elif name == "note":
            self._converter_param("singing", "note", value)
        elif name == "transpose":
            for mode in self.converters:
                self._converter_param(mode, "transpose", value)
        elif name == "duration":
            self._converter_param("speech", "duration", value)
        elif name == "fx":
            plugin, param, v = value
            try:
                self.chain.set_parameter(plugin, param, v)
            except ValueError as exc:   # an unknown plugin or parameter, a value out of range
                raise ConfigError(f"fx {plugin}/{param}: {exc}") from exc
        elif name == "preset":
            self._load_preset(str(value))
        else:
            raise ConfigError(f"unknown parameter {name!r}")

    def _set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ConfigError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        if mode == "bypass":
            self.realtime.set_bypass(True)
            return
        if mode not in self.converters:
            raise ConfigError(f"mode {mode!r} is not available: this engine was started with {', '.join(self.converters)}")
        self.realtime.set_bypass(False)
        if mode != self.mode:
            self.mode = mode
            self._swap(self._build(self.converters[mode], self.preset))

    def _load_preset(self, name: str) -> None:
        # a run-time change (OSC) names a preset; only the command line may give a path
        if is_preset_path(name):
            raise ConfigError(f"preset {name!r}: a run-time preset change takes a preset name, never a path; "
                              "put the file in the user preset folder (docs/effects.md) and send its name")
        chain = self._build(self.converters[self.mode], name)  # raises before anything changes
        self.preset = name
        self._swap(chain)

    def _swap(self, chain: Chain) -> None:
        self._processor.swap(chain)
        self._processor.pending = list(self._sticky[self.mode].items())

    def _converter_param(self, mode: str, name: str, value) -> None:
        converter = self.converters.get(mode)
        if converter is None:
            raise ConfigError(f"{name} needs a {mode} converter; this engine has {', '.join(self.converters)}")
        params = spec_of(converter).params
        if name not in params:
            raise ConfigError(f"{name} does not apply to {converter.name}; it takes {', '.join(params)}")
        if mode != self.mode:
            if name == "note":
                return  # notes only mean something to the converter that is singing now
            converter.set_param(converter.init_state(), name, value)  # validate now, apply after a swap
            self._sticky[mode][name] = value
            return
        streamer = self.chain.streamer
        if streamer is None or not self._processor.started:
            converter.set_param(converter.init_state(), name, value)  # validate now, apply after its first block
            self._processor.pending.append((name, value))
        else:
            converter.set_param(streamer.state, name, value)
        if name != "note":
            self._sticky[mode][name] = value
