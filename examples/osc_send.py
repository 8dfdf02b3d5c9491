"""Control a running ``voxflip live --osc HOST:PORT`` from Python.

Sets the dry/wet mix and the output gain, plays three notes (C4 E4 G4: note on, then
note off), then asks for the status and prints the reply.

    python examples/osc_send.py --port 9000

Needs only python-osc (``pip install python-osc``); it does not import voxflip.
Exit status: 0 when a status reply came back, 1 when none did within ``--timeout``.
"""

from __future__ import annotations

import argparse
import sys
import time

from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

NOTES = (60, 64, 67)            # MIDI note numbers: C4, E4, G4
STATUS_NAMES = ("latency_ms", "rtf_p50", "rtf_p99", "xruns", "osc_accepted", "osc_rejected", "queue_depth")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="where voxflip listens (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="its --osc port (default: 9000)")
    parser.add_argument("--mix", type=float, default=0.75, help="dry/wet 0..1 (default: 0.75)")
    parser.add_argument("--gain-db", type=float, default=-6.0, help="output gain, dB -60..24 (default: -6)")
    parser.add_argument("--note-s", type=float, default=0.2, help="how long each note is held, s (default: 0.2)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the status reply")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    client = SimpleUDPClient(args.host, args.port)

    client.send_message("/voxflip/mix", float(args.mix))          # f: 0..1
    client.send_message("/voxflip/gain", float(args.gain_db))     # f: dB
    for note in NOTES:
        client.send_message("/voxflip/note", [note, 0.8])         # i note, f velocity: note on
        time.sleep(args.note_s)
        client.send_message("/voxflip/note", [note, 0.0])         # velocity 0: note off
    client.send_message("/voxflip/status", [])                    # no arguments; the reply comes to this socket

    reply = client.receive(args.timeout)
    if not reply:
        print(f"no status reply from {args.host}:{args.port} within {args.timeout} s "
              "(is voxflip live running with --osc, and does --osc-allow include this machine?)", file=sys.stderr)
        return 1
    message = OscMessage(reply)
    values = message.params
    print(f"{message.address}:")
    for name, value in zip(STATUS_NAMES, values, strict=False):
        print(f"  {name:<13} {value:g}" if isinstance(value, float) else f"  {name:<13} {value}")
    extras = values[len(STATUS_NAMES):]
    for name, value in zip(extras[0::2], extras[1::2], strict=False):
        print(f"  {name:<13} {value:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
