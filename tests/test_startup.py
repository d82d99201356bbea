"""Start-up: the CLI module, every command's --help, and `retrieval info` import none of torch, torchvision and
FAISS (their import is most of a command's start-up time). Timings are the benchmark's job
(scripts/benchmark.py --sections startup); this checks what gets imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from retrieval import build_index
from tests.conftest import RANDOM_WHOLE, copy_demo_images

HEAVY = ("torch", "torchvision", "faiss")
COMMANDS = ("index", "query", "evaluate", "info", "remove", "serve", "detect", "export", "train-detector",
            "evaluate-detector")

RUN_CLI = """
import json, runpy, sys
sys.argv = ["retrieval", *sys.argv[1:]]
try:
    runpy.run_module("retrieval.cli.main", run_name="__main__")
except SystemExit as stop:
    code = stop.code
else:
    code = 0
sys.stderr.write("\\nIMPORTED " + json.dumps([m for m in %r if m in sys.modules]) + " EXIT " + str(code) + "\\n")
""" % (HEAVY,)


def run_cli(*argv: str) -> tuple[list[str], str, str]:
    """Run ``retrieval ARGV`` in a fresh interpreter: ``(heavy modules it imported, exit code, stdout)``."""
    done = subprocess.run([sys.executable, "-c", RUN_CLI, *argv], capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    imported, code = last.removeprefix("IMPORTED ").split(" EXIT ")
    return json.loads(imported), code, done.stdout


def test_importing_the_cli_imports_no_heavy_library():
    probe = f"import sys, retrieval, retrieval.cli.main; print([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_imports_no_heavy_library(command):
    imported, code, out = run_cli(*([command] if command else []), "--help")
    assert (imported, code) == ([], "0")
    assert "Usage: retrieval" in out


def test_info_imports_no_heavy_library(tmp_path):
    copy_demo_images(tmp_path / "gallery", 3)
    build_index(tmp_path / "gallery", tmp_path / "index", RANDOM_WHOLE, progress=False)
    imported, code, out = run_cli("info", "--index", str(tmp_path / "index"), "--json")
    assert (imported, code) == ([], "0")
    assert json.loads(out)["images"] == 3


def test_the_cli_freezes_the_garbage_collector_at_exit():
    """The interpreter's final collection then skips what torch, torchvision and FAISS made (about 1 s a
    command); a handler registered before the CLI module runs after its freeze (atexit is last in, first out)."""
    probe = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "import retrieval.cli.main\n"
        "print('frozen before exit:', gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["frozen before exit: False", "frozen at exit: True"]
