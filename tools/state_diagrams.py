#!/usr/bin/env python3
"""Render the SIP transaction state machines of firmware/sip/_states.py as diagrams.

    tools/state_diagrams.py                 # Graphviz DOT of all four machines on stdout
    tools/state_diagrams.py --format mermaid
    tools/state_diagrams.py -o docs/        # one file per machine (.dot or .mmd)
    dot -Tsvg invite_client.dot > invite_client.svg

Edges are labelled ``input / actions``; timers are in the labels (``start D``...).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware.sip._states import INITIAL, TRANSITIONS, Kind, State


def _actions(actions: tuple[tuple[str, ...], ...]) -> str:
    return ", ".join(" ".join(a) for a in actions)


def edges(kind: Kind) -> list[tuple[str, str, str]]:
    """``(from, to, label)`` of every transition of ``kind``, the initial one first."""
    start, actions = INITIAL[kind]
    out = [("start", start.value, _actions(actions))]
    for state, table in TRANSITIONS[kind].items():
        for inp, (dst, acts) in table.items():
            label = inp.value + (f" / {_actions(acts)}" if acts else "")
            out.append((state.value, dst.value, label))
    return out


def dot(kind: Kind) -> str:
    """Graphviz source of one machine."""
    lines = [f'digraph "{kind.value}" {{', "  rankdir=TB;", '  node [shape=box, style=rounded];',
             '  start [shape=point];', f'  "{State.TERMINATED.value}" [shape=doublecircle];']
    for src, dst, label in edges(kind):
        a = "start" if src == "start" else f'"{src}"'
        lines.append(f'  {a} -> "{dst}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid(kind: Kind) -> str:
    """Mermaid stateDiagram source of one machine."""
    lines = ["stateDiagram-v2", f"  %% {kind.value} transaction"]
    for src, dst, label in edges(kind):
        a = "[*]" if src == "start" else src
        b = "[*]" if dst == State.TERMINATED.value else dst
        lines.append(f"  {a} --> {b}: {label.replace(':', ' ')}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("dot", "mermaid"), default="dot")
    parser.add_argument("-o", "--output", type=Path, help="directory for one file per machine")
    args = parser.parse_args(argv)
    render = dot if args.format == "dot" else mermaid
    ext = ".dot" if args.format == "dot" else ".mmd"
    for kind in Kind:
        text = render(kind)
        if args.output is None:
            sys.stdout.write(text + "\n")
        else:
            args.output.mkdir(parents=True, exist_ok=True)
            (args.output / (kind.name.lower() + ext)).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
