"""Fuzz: bad values at every option of every command and at every HTTP route and form field.

The cases come from one generated table: for each option, the bad values of its kind (a count, a fraction,
a choice, an existing folder, ...): negative, zero, huge, NaN, infinite, non-numeric, empty, unicode, missing
paths, files where folders are expected and the reverse, a FIFO, a dangling symlink, a file that is not
UTF-8. Each command case must exit non-zero (1 for a value the API refuses, 2 for one click refuses) with
exactly one ``error:`` line on stderr, raise nothing (no traceback), and leave the index, the gallery and
every other input as they were. Unless a case is marked ``models``, it must be refused before any model is
built: building a torch module raises ``ModelBuilt`` here. Each HTTP case must answer 4xx with a string
``detail``. Everything runs in process (click's CliRunner, Starlette's TestClient) on one small index.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from click.testing import CliRunner
from PIL import Image
from starlette.testclient import TestClient

from retrieval import build_index
from retrieval.cli.main import main
from retrieval.models.detectors.architectures import build_architecture
from retrieval.models.detectors.checkpoint import save_checkpoint
from retrieval.server import ServerState, create_app

from tests.conftest import FUZZ_CASES, RANDOM_WHOLE
from retrieval.testing.shapes import CLASSES, write_yolo_dataset

USER, USAGE = (1,), (2,)  # exit statuses: a value the API refuses, one click refuses
IMAGES = {"a.png": (64, 48), "b.png": (48, 64), "sub/c.png": (40, 40)}
LIGHT_DETECTOR = ["--detector", "mobilenet_v3_large_320_fpn", "--weights", "random"]
GROUND_TRUTH = {"queries": [{"image": "gallery/a.png", "positives": ["gallery/b.png"]}]}
EMPTY = {"queries": []}
UNKNOWN_POSITIVE = {"queries": [{"image": "gallery/a.png", "positives": ["elsewhere.png"]}]}
BATCH_FILES = {  # query --batch files: a good one, ones refused whole, ones whose every line fails on its own
    "batch.jsonl": '{"image": "gallery/a.png", "box": [0, 0, 10, 10]}\n',
    "empty.jsonl": "\n\n",
    "header-only.csv": "image,x1,y1,x2,y2\n",
    "no-header.csv": "gallery/a.png,0,0,10,10\n",
    "bad-lines.jsonl": '{"image": "gallery/a.png",\n{"box": [0, 0, 1, 1]}\n{"image": "missing.png"}\n'
    + '{"image": "gallery/a.png", "box": [0, 0, 999, 10]}\n{"image": "gallery/a.png", "time": 3}\n[1, 2]\n',
    "bad-rows.csv": "image,x1,y1,x2,y2\ngallery/a.png,0,0,x,10\nmissing.png,,,,\ngallery/a.png,0,0,10\n",
}


class ModelBuilt(Exception):
    """A torch module was built: the case's bad value was not refused before the models load."""


def _no_models(*args, **kwargs):
    raise ModelBuilt("a model was built before the bad value was refused")


def _no_server(*args, **kwargs):
    raise ModelBuilt("the server would have started listening")


# -- the table ---------------------------------------------------------------------------------------------


def ints(low: int) -> list[tuple[str, tuple[int, ...]]]:
    """Bad values of an int option that must be at least ``low``."""
    below = [(str(low - 1), USER), ("-1", USER), ("-" + "9" * 30, USER)]
    unparsable = ["nan", "inf", "1.5", "ten", "", "五", "1e3", "0x10", "9" * 400 + ".5"]
    return list(dict.fromkeys(below)) + [(value, USAGE) for value in unparsable]


def floats(low: float, high: float | None = None, low_allowed: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """Bad values of a float option that must lie in ``[low, high]`` (``(low, high]`` unless ``low_allowed``)."""
    values = [str(low - 1), "-1e-9" if low == 0 else str(low - 0.5), "nan", "inf", "-inf", "1e999"]
    values += [] if low_allowed else [str(low)]
    values += [] if high is None else [str(high + 0.5), "9" * 40]
    return [(value, USER) for value in dict.fromkeys(values)] + [(v, USAGE) for v in ("x", "", "½", "1,5")]


CHOICE = [(value, USAGE) for value in ("", "nope", "ünïcödé ☃", "AUTO")]
REGISTERED = [(value, USER) for value in ("", "nope", "ünïcödé ☃", "ROI")]  # a registry's name, checked by the API
FLAG = [("yes", USAGE)]  # given as --flag=yes
FRACTION, POSITIVE, NON_NEGATIVE = floats(0, 1), floats(0, low_allowed=False), floats(0)
READ_FOLDER = [("{missing}", USAGE), ("{plain}", USAGE), ("{dangling}", USAGE), ("", USAGE), ("{pipe}", USER)]
READ_FILE = [("{missing}", USAGE), ("{folder}", USAGE), ("{dangling}", USAGE), ("", USAGE)] + [
    (name, USER) for name in ("{pipe}", "{binary}", "{empty}", "{plain}")
]
READ_IMAGE = [("{folder}", USAGE)] + [
    (name, USER) for name in ("{missing}", "{dangling}", "{pipe}", "{binary}", "{empty}", "{plain}", "")
]
READ_INDEX = [("{plain}", USAGE)] + [
    (name, USER) for name in ("{missing}", "{folder}", "{gallery}", "{dangling}", "{pipe}", "", "{missing}/ü")
]
WRITE_FOLDER = [("{plain}", USAGE), ("{plain}/under", USER), ("{pipe}", USER)]
BOXES = [
    (box, USER)
    for box in ("", "1,2,3", "1,2,3,4,5", "a,b,c,d", "nan,0,1,1", "0,0,inf,1", "0,0,1e999,1", "5,5,5,9", "9,5,5,9")
    + ("-1,0,10,10", "0,0,65,10", "0,0,10,49", "0,0,99999999999,1", "１,２,３", ",,,", "0;0;1;1", "0,0,0,0")
]
RERANK_OPTIONS = {"--rerank": CHOICE, "--qe-k": ints(0) + [("1001", USER)], "--qe-alpha": floats(0, 100)}


@dataclass(frozen=True)
class Spec:
    """One command's valid arguments (``base``, with positional placeholders in capitals) and its options."""

    base: tuple[str, ...]
    options: dict  # option -> [(value, exit statuses[, models])], or _with(that list, extra arguments, models)
    command: str = ""  # the command run, where the table's key names a form of it ("query --batch"); else the key


def _with(values, extra=(), models=False):
    return values, {"extra": list(extra), "models": models}


SPECS = {
    "index": Spec(
        ("GALLERY", "--index", "{new}", "--embedder", "resnet50", "--objects", "whole", "--weights", "random", "-q"),
        {
            "GALLERY": READ_FOLDER,
            "--index": [("{plain}", USAGE), ("{dangling}", USER), ("{pipe}", USER), ("{plain}/index", USER)],
            "--embedder": REGISTERED,
            "--objects": CHOICE,
            "--annotations": _with(
                [(path, USAGE) for path in ("{missing}", "{dangling}", "")]
                + [(path, USER) for path in ("{pipe}", "{binary}", "{empty}", "{plain}", "{folder}")],
                ["--objects", "annotations"],
            ),
            "--weights": _with([("", USER), ("{missing}", USER), ("{folder}", USER), ("{binary}", USER)], models=True),
            "--detector-weights": _with([("{missing}", USER), ("{binary}", USER)], ["--objects", "detect"], True),
            "--detector": _with(
                [("", USER), ("nope", USER), ("ünï", USER), ("{missing}.pt", USER)], ["--objects", "detect"]
            ),
            "--score-threshold": FRACTION,
            "--max-objects": ints(1),
            "--classes": _with([("persn", USER)], ["--objects", "detect", *LIGHT_DETECTOR[:2]], True),
            "--min-size": ints(32),
            "--max-size": ints(32),
            "--device": CHOICE,
            "--precision": CHOICE,
            "--index-type": [(value, USER) for value in ("", "nope", "IVF0,Flat", "PQ0", "Flat,IVF", "ünï")],
            "--rebuild": FLAG,
            "--prune": FLAG,
            "--max-pixels": ints(1),
            "--commit-every": NON_NEGATIVE,
            "--quiet": FLAG,
            "--whiten": [(v, USAGE) for v in ("-2", "nan", "1.5", "ten", "")],  # "-2" reads as an option: usage
            "--dba": ints(0) + [("1001", USER)],
            "--video-fps": floats(0, 240, low_allowed=False),
            "--video-min-change": FRACTION,
            "--vector-store": REGISTERED,
            "--milvus-uri": _with(
                [(uri, USER) for uri in ("http://h:1/c", "milvus://", "milvus://h/c", "milvus://h:1/bad-name", "ünï")],
                ["--vector-store", "milvus"],
            ),
        },
    ),
    "query": Spec(
        ("IMAGE", "--index", "{index}"),
        {
            "IMAGE": READ_IMAGE,
            "--index": READ_INDEX,
            "--box": BOXES,
            "--top-k": ints(1),
            "--group": CHOICE,
            "--json": FLAG,
            "--save-vis": [("{folder}", USAGE), ("{out}.txt", USER, True), ("{plain}/x.jpg", USER, True)],
            "--time": NON_NEGATIVE,  # a time on a still image is refused whatever it is
            "--device": CHOICE,
            "--precision": CHOICE,
            **RERANK_OPTIONS,
        },
    ),
    "query --batch": Spec(
        ("--index", "{index}", "--batch", "BATCH"),
        {
            "BATCH": [("{folder}", USAGE)]
            + [(p, USER) for p in ("{missing}", "{dangling}", "", "{plain}", "{binary}", "{empty}", "{pipe}")]
            + [(p, USER) for p in ("{missing}.jsonl", "{pipe_jsonl}", "{binary_jsonl}", "{empty_jsonl}")]
            + [(p, USER) for p in ("{header_only_csv}", "{no_header_csv}")]
            + [(p, USER, True) for p in ("{bad_lines_jsonl}", "{bad_rows_csv}")],  # each line's error, then one
            "IMAGE": [("{gallery}/a.png", USAGE)],  # given beside --batch FILE
            "--box": [("0,0,10,10", USAGE)],
            "--time": [("1", USAGE)],
            "--save-vis": [("{out}.jpg", USAGE)],
            "--top-k": ints(1),
            "--group": CHOICE,
            **RERANK_OPTIONS,
        },
        command="query",
    ),
    "evaluate": Spec(
        ("--index", "{index}", "--ground-truth", "{gt}"),
        {
            "--index": READ_INDEX,
            "--ground-truth": READ_FILE + [("{gt_empty}", USER), ("{gt_unknown}", USER, True)],
            "--top-k": ints(1),
            "--json": FLAG,
            "--device": CHOICE,
            "--precision": CHOICE,
            **RERANK_OPTIONS,
        },
    ),
    "info": Spec(("--index", "{index}"), {"--index": READ_INDEX, "--json": FLAG}),
    "compact": Spec(("--index", "{index}"), {"--index": READ_INDEX}),
    "remove": Spec(
        ("--index", "{index}", "PATH"),
        {
            "--index": READ_INDEX,
            "PATH": [(p, USER) for p in ("{missing}", "", " ", "{plain}", "..", "/", "ünï.png", "{folder}", ".")],
        },
    ),
    "serve": Spec(
        ("--index", "{index}"),
        {
            "--index": READ_INDEX,
            "--host": _with([(host, USER) for host in ("", "999.1.1.1", "not a host")], ["--insecure"]),
            "--port": ints(1) + [("65536", USER)],
            "--max-upload-mb": POSITIVE,
            "--max-pixels": ints(1),
            "--poll-seconds": POSITIVE,
            "--device": CHOICE,
            "--precision": CHOICE,
            "--token-file": [(path, USER) for path in ("{missing}", "{folder}", "{dangling}", "", "{pipe}")]
            + [(path, USER) for path in ("{binary}", "{empty}", "{plain}")],  # plain: text, but spaces, not ASCII
            "--insecure": FLAG,
            "--quiet": FLAG,
        },
    ),
    "detect": Spec(
        ("IMAGES", "--out", "{out}", *LIGHT_DETECTOR, "--quiet"),
        {
            "IMAGES": [(path, USER) for path in ("{missing}", "{plain}", "{folder}", "{pipe}", "")],
            "--out": WRITE_FOLDER,
            "--weights": [("", USER), ("{missing}", USER), ("{binary}", USER)],
            "--detector": [("", USER), ("nope", USER), ("{missing}.pt", USER), ("{binary}", USER)],
            "--score-threshold": FRACTION,
            "--max-objects": ints(1),
            "--classes": [("persn", USER)],
            "--min-size": ints(32),
            "--max-size": ints(32),
            "--device": CHOICE,
            "--precision": CHOICE,
            "--max-pixels": ints(1),
            "--quiet": FLAG,
        },
    ),
    "train-detector": Spec(
        ("--data", "{yolo}", "--out", "{out}/m.pt", *LIGHT_DETECTOR, "--epochs", "1", "--quiet"),
        {
            "--data": [("{missing}", USER), ("{plain}", USAGE), ("{folder}", USER), ("", USER)],
            "--out": [("{folder}", USAGE), ("", USER), ("{plain}/m.pt", USER)],
            "--epochs": ints(1),
            "--detector": CHOICE,
            "--weights": [("", USER), ("{missing}", USER), ("{binary}", USER)],
            "--batch-size": ints(1),
            "--lr": POSITIVE,
            "--momentum": NON_NEGATIVE,
            "--weight-decay": NON_NEGATIVE,
            "--step-size": ints(0),
            "--gamma": POSITIVE,
            "--min-size": ints(32),
            "--max-size": ints(32),
            "--score-threshold": FRACTION,
            "--workers": ints(0),
            "--seed": ints(0),
            "--device": CHOICE,
            "--resume": FLAG,
            "--quiet": FLAG,
        },
    ),
    "evaluate-detector": Spec(
        ("--data", "{yolo}", "--checkpoint", "{checkpoint}", "--quiet"),
        {
            "--data": [("{missing}", USER), ("{plain}", USAGE), ("{folder}", USER), ("", USER)],
            "--checkpoint": [("{folder}", USAGE)] + [(p, USER) for p in ("{missing}", "{binary}", "{plain}", "")],
            "--split": CHOICE,
            "--score-threshold": FRACTION,
            "--device": CHOICE,
            "--json": FLAG,
            "--save-vis": [("{plain}", USAGE), ("{plain}/under", USER)],
            "--quiet": FLAG,
        },
    ),
    "export": Spec(
        ("--index", "{index}", "--format", "features", "--out", "{out}"),
        {"--index": READ_INDEX, "--format": CHOICE, "--out": WRITE_FOLDER, "--quiet": FLAG},
    ),
}
POSITIONALS = {"GALLERY": "{gallery}", "IMAGE": "{gallery}/a.png", "PATH": "a.png", "IMAGES": "{gallery}/a.png"}
POSITIONALS |= {"BATCH": "{batch_jsonl}"}


@dataclass(frozen=True)
class Case:
    command: str  # the table's key: the command, or a form of it ("query --batch")
    option: str
    value: str
    args: tuple[str, ...]
    codes: tuple[int, ...]
    models: bool = False

    @property
    def id(self) -> str:
        return f"{self.command} {self.option} {self.value!r}"

    @property
    def argv(self) -> list[str]:
        """The command line after ``retrieval``, placeholders unfilled (a required argument left out: none)."""
        spec = SPECS[self.command]
        return [spec.command or self.command, *self.args] if self.args else [spec.command or self.command]


def _option_cases(command: str, spec: Spec, option: str, entry) -> list[Case]:
    values, how = entry if isinstance(entry, tuple) else (entry, {"extra": [], "models": False})
    cases = []
    for value, codes, *models in values:
        base = [value if token == option in POSITIONALS else POSITIONALS.get(token, token) for token in spec.base]
        if option.startswith("-"):
            given = [f"{option}={value}"] if entry is FLAG else [option, value]
            base = [*base, *how["extra"], *given]
        elif option not in spec.base:  # a positional argument that this form of the command must not be given
            base = [*base, value]
        cases.append(Case(command, option, value, tuple(base), codes, models[0] if models else how["models"]))
    return cases


def cli_cases() -> list[Case]:
    """Every option's bad values, an unknown option and the required arguments left out, for every command."""
    cases = []
    for command, spec in SPECS.items():
        for option, entry in spec.options.items():
            cases += _option_cases(command, spec, option, entry)
        base = tuple(POSITIONALS.get(token, token) for token in spec.base)
        cases += [Case(command, "--bogus", "", (*base, "--bogus"), USAGE), Case(command, "(nothing)", "", (), USAGE)]
    return cases


# -- the world the cases run in ----------------------------------------------------------------------------


@dataclass
class World:
    root: Path  # everything here is compared before and after each case
    paths: dict[str, str]
    app: TestClient


def _write_inputs(root: Path) -> dict[str, str]:
    """The gallery, bad inputs of every kind, and a ground truth; returns the placeholders' paths."""
    rng = np.random.default_rng(0)
    for name, (width, height) in IMAGES.items():
        (root / "gallery" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "gallery" / name)
    (root / "folder").mkdir()
    (root / "plain.txt").write_text("not an image, not JSON: ünïcödé\n", encoding="utf-8")
    (root / "binary.jpg").write_bytes(bytes(range(256)) * 8)  # neither an image nor UTF-8
    (root / "empty.json").write_bytes(b"")
    os.mkfifo(root / "pipe.jpg")  # a FIFO: unreadable without a writer, even for root
    os.symlink(root / "nowhere", root / "dangling.jpg")
    for name, content in (("gt.json", GROUND_TRUTH), ("gt_empty.json", EMPTY), ("gt_unknown.json", UNKNOWN_POSITIVE)):
        (root / name).write_text(json.dumps(content), encoding="utf-8")
    for name, text in BATCH_FILES.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    os.mkfifo(root / "pipe.jsonl")
    names = {"gallery": "gallery", "folder": "folder", "plain": "plain.txt", "binary": "binary.jpg"}
    names |= {"empty": "empty.json", "pipe": "pipe.jpg", "dangling": "dangling.jpg", "missing": "missing"}
    names |= {"gt": "gt.json", "gt_empty": "gt_empty.json", "gt_unknown": "gt_unknown.json", "new": "new-index"}
    names |= {name.replace(".", "_").replace("-", "_"): name for name in [*BATCH_FILES, "binary.jsonl", "pipe.jsonl"]}
    return {key: str(root / name) for key, name in names.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, request) -> World:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "world").mkdir()
    paths = _write_inputs(root / "world")
    paths |= {"index": str(root / "world" / "index"), "yolo": str(write_yolo_dataset(root / "yolo", 2, 1))}
    build_index(paths["gallery"], paths["index"], RANDOM_WHOLE, progress=False)
    model = build_architecture("mobilenet_v3_large_320_fpn", len(CLASSES) + 1, 320, 320)
    save_checkpoint(root / "detector.pt", model, "mobilenet_v3_large_320_fpn", CLASSES)
    paths |= {"checkpoint": str(root / "detector.pt"), "out": str(root / "out" / "case")}
    (root / "cwd").mkdir()
    app = TestClient(create_app(ServerState(paths["index"], device="cpu")), raise_server_exceptions=False)
    yield World(root / "world", paths, app)
    ran = FUZZ_CASES.get(request.config)
    print(f"\nfuzz: {ran} bad-input cases ran")


def fingerprint(root: Path) -> dict[str, str]:
    """Every file and folder under ``root``: sha256 of regular files, the kind of anything else.

    The index's lock file and SQLite's shared-memory and WAL files (which readers touch) are left out.
    """
    found = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = Path(folder) / name
            if name == "lock" or name.endswith(("-shm", "-wal")):
                continue
            if path.is_symlink():
                found[str(path)] = f"link {os.readlink(path)}"
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "folder" if path.is_dir() else "other"
    return found


# -- the checks ----------------------------------------------------------------------------------------------


CLI_CASES = cli_cases()


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CLI_CASES])
def test_a_bad_value_is_one_line_and_changes_nothing(case: Case, world: World, monkeypatch, request, tmp_path):
    FUZZ_CASES.count(request.config)
    args = [arg.format(**{**world.paths, "out": str(tmp_path / "out")}) for arg in case.args]
    monkeypatch.chdir(tmp_path)
    if not case.models:
        monkeypatch.setattr(torch.nn.Module, "__init__", _no_models)
    monkeypatch.setattr(uvicorn, "run", _no_server)
    before = fingerprint(world.root)
    result = CliRunner().invoke(main, [case.argv[0], *args] if case.args else case.argv)
    assert not isinstance(result.exception, ModelBuilt), f"not refused before the models load: {result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in case.codes, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"error: \S.*", lines[0]), result.stderr
    assert fingerprint(world.root) == before


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _declared_png(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` pixels, with no pixel data (a decompression bomb's start)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


GOOD_UPLOAD = ("a.png", _png(64, 48), "image/png")
BAD_UPLOADS = [("empty.png", b""), ("text.png", "ünïcödé".encode()), ("random.jpg", bytes(range(256)) * 4)]
BAD_UPLOADS += [("bomb.png", _declared_png(100_000, 100_000)), ("truncated.png", _png(64, 48)[:60])]
BAD_IDS = ["-1", "999999", "x", "1.5", "nan", "ü", "9" * 30, "%00"]
BAD_TOP_K = ["0", "-1", "101", "x", "nan", "", "1.5", "9" * 30]
BAD_GROUP = ["", "nope", "ünï"]
BAD_RERANK = {"rerank": ["", "nope", "AQE"], "qe_k": ["-1", "1001", "x", "nan", "", "1.5"]}
BAD_RERANK["qe_alpha"] = ["-1", "101", "nan", "inf", "x", ""]


def http_cases() -> list:
    """``(name, method, url, request arguments)`` of bad requests to every route and form field."""
    cases = []
    for bad in BAD_IDS:
        for url in (f"/api/images/{bad}", f"/api/images/{bad}/picture", f"/api/images/{bad}/thumbnail"):
            cases.append(("path id", "GET", url, {}))
        cases.append(("path id", "GET", f"/api/objects/{bad}/similar", {}))
        cases.append(("image_id", "POST", "/api/query", {"data": {"image_id": bad}}))
    for field, values in (("offset", ["-1", "x", "nan", ""]), ("limit", ["0", "-1", "1001", "x", "nan", ""])):
        cases += [(field, "GET", "/api/images", {"params": {field: value}}) for value in values]
    for field, values in (("top_k", BAD_TOP_K), ("group", BAD_GROUP), *BAD_RERANK.items()):
        cases += [(field, "GET", "/api/objects/0/similar", {"params": {field: value}}) for value in values]
    upload = {"image": GOOD_UPLOAD}
    form_values = {"box": [box for box, _ in BOXES if box], "top_k": BAD_TOP_K, "group": BAD_GROUP, **BAD_RERANK}
    for field, values in form_values.items():
        cases += [(field, "POST", "/api/query", {"files": upload, "data": {field: value}}) for value in values]
    for name, data in BAD_UPLOADS:
        for url in ("/api/query", "/api/detect"):
            cases.append(("upload", "POST", url, {"files": {"image": (name, data, "image/png")}}))
    cases += [
        ("neither", "POST", "/api/query", {}),
        ("both", "POST", "/api/query", {"files": upload, "data": {"image_id": "0"}}),
        ("no file", "POST", "/api/detect", {}),
        ("route", "GET", "/api/nope", {}),
        ("method", "POST", "/api/health", {}),
        ("method", "DELETE", "/api/images/0", {}),
        ("static", "GET", "/static/../../../etc/passwd", {}),
        ("static", "GET", "/static/%2e%2e/app.py", {}),
        ("static", "GET", "/static/nope.js", {}),
    ]
    return cases


def _http_param(name: str, method: str, url: str, arguments: dict):
    fields = arguments.get("data") or arguments.get("params") or ""
    return pytest.param(method, url, arguments, id=f"{method} {url} {name} {fields}")


@pytest.mark.parametrize("method, url, arguments", [_http_param(*case) for case in http_cases()])
def test_a_bad_request_is_a_4xx_with_one_line_of_detail(method: str, url: str, arguments: dict, world: World, request):
    FUZZ_CASES.count(request.config)
    before = fingerprint(world.root)
    response = world.app.request(method, url, **arguments)
    assert 400 <= response.status_code < 500, response.text
    detail = response.json().get("detail")
    assert isinstance(detail, str) and detail.strip() and "\n" not in detail, response.text
    assert "Traceback" not in response.text
    assert fingerprint(world.root) == before
