"""Start-up: how long whole ``retrieval`` commands take, each in a fresh process, as a user runs them.

Rows: ``retrieval --help``, ``retrieval index --help``, ``retrieval info`` and ``retrieval query`` (model
loading and one search included) on a small index the benchmark builds, each the median of ``runs``
fresh processes, with the heavy libraries (torch, torchvision, faiss) each command imported. The goal
for ``--help`` is under 0.5 s on a 2-core machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "faiss")
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['retrieval'] + sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module('retrieval.cli.main', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "finally:\n"
    "    sys.stderr.write('HEAVY ' + ','.join(m for m in {heavy!r} if m in sys.modules) + '\\n')\n"
)


def startup_rows(index_dir: Path, query_image: Path, runs: int, say=print) -> list[dict]:
    """Time each command ``runs`` times in fresh processes; ``index_dir`` is an index of ``query_image``'s kind."""
    commands = {
        "retrieval --help": ["--help"],
        "retrieval index --help": ["index", "--help"],
        "retrieval info": ["info", "--index", str(index_dir)],
        "retrieval query (whole command)": ["query", str(query_image), "--index", str(index_dir), "--top-k", "5"],
    }
    rows = []
    for name, argv in commands.items():
        seconds, imported = [], ""
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv], capture_output=True, text=True, check=False
            )
            seconds.append(time.perf_counter() - start)
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            imported = last.removeprefix("HEAVY").strip() if last.startswith("HEAVY") else "?"
        rows.append(
            {
                "command": name,
                "runs": runs,
                "median_s": round(statistics.median(seconds), 3),
                "min_s": round(min(seconds), 3),
                "imports": imported or "none of " + ", ".join(HEAVY),
            }
        )
        say(f"  {name}: {rows[-1]['median_s']} s")
    return rows
