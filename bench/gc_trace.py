"""Run ``switchhook`` (ivr.cli) with a gc callback that records every collection's
generation, duration and object counts to ``$SWITCHHOOK_GC_TRACE`` (JSON lines) — to see
whether event-loop stalls are garbage-collector pauses. Bench-only.

  SWITCHHOOK_GC_TRACE=/tmp/gc.jsonl python3 bench/gc_trace.py run --config ...
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_out = open(os.environ.get("SWITCHHOOK_GC_TRACE", "gc-trace.jsonl"), "a")
_start = [0.0]


def _callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _start[0] = time.perf_counter()
        return
    if info["generation"] < 1:
        return
    _out.write(
        json.dumps(
            {
                "t": time.time(),
                "gen": info["generation"],
                "ms": round(1000 * (time.perf_counter() - _start[0]), 2),
                "collected": info["collected"],
                "tracked": len(gc.get_objects(info["generation"]))
                if info["generation"] == 2
                else None,
            }
        )
        + "\n"
    )
    _out.flush()


gc.callbacks.append(_callback)

from ivr.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
