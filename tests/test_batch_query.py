"""Many queries at once: ``retrieval query --batch FILE`` and ``Searcher.query_many`` (random weights).

The index: eight demo scenes with their annotation boxes, and a flat grey picture with a grid of 40 boxes of
one size (one vector 40 times), so that ranking images sometimes needs a second, larger search (the case
``rank_many`` must get right). Batches stay under 20 queries where results are compared exactly: FAISS scores
20 or more queries at once with BLAS, which rounds differently.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from retrieval import Query, RetrievalError, Searcher, build_index
from retrieval.cli.main import main
from retrieval.errors import BoxError, ImageError, QueryFileError
from retrieval.search import queries as queries_module
from retrieval.search.batch import read_batch_file
from retrieval.search.searcher import rank, rank_many
from tests.conftest import ANNOTATED_RESNET, GALLERY, QUERY

SCENES = [f"scene_{n:03d}.jpg" for n in range(8)]
CROWDED = "crowded.png"  # flat grey, with a 8 x 5 grid of 64 x 80 boxes
GROUND_TRUTH = json.loads((QUERY / "ground_truth.json").read_text())["queries"]


def _annotations(folder: Path) -> Path:
    """The demo's COCO boxes of ``SCENES`` plus the grid of ``CROWDED``, written to ``folder``."""
    coco = json.loads((GALLERY / "annotations.json").read_text())
    images = [image for image in coco["images"] if image["file_name"] in SCENES]
    kept = {image["id"] for image in images}
    annotations = [a for a in coco["annotations"] if a["image_id"] in kept]
    images.append({"id": 999, "file_name": CROWDED, "width": 640, "height": 480})
    for n in range(40):
        box = [(n % 8) * 80, (n // 8) * 96, 64, 80]
        annotations.append({"id": 10_000 + n, "image_id": 999, "category_id": 1, "bbox": box, "area": 64 * 80})
    path = folder / "annotations.json"
    path.write_text(json.dumps({**coco, "images": images, "annotations": annotations}))
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batch")
    (root / "gallery").mkdir()
    for name in SCENES:
        shutil.copy(GALLERY / name, root / "gallery" / name)
    Image.new("RGB", (640, 480), (128, 128, 128)).save(root / "gallery" / CROWDED)
    settings = ANNOTATED_RESNET.__class__.from_dict(
        {**ANNOTATED_RESNET.to_dict(), "annotations": str(_annotations(root))}
    )
    build_index(root / "gallery", root / "index", settings, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def searcher(index) -> Searcher:
    return Searcher(index, device="cpu")


@pytest.fixture()
def queries_dir(tmp_path) -> Path:
    """A folder with three query images (the demo's first three), the batch files go beside them."""
    for entry in GROUND_TRUTH[:3]:
        shutil.copy(QUERY / entry["image"], tmp_path / entry["image"])
    return tmp_path


def _batch(cwd_index, *args) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, ["query", "--index", str(cwd_index), "--device", "cpu", *map(str, args)])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def _ids(results) -> list[int]:
    return [r["object_id"] if isinstance(r, dict) else r.object_id for r in results]


def test_jsonl_and_csv_answer_each_query_in_order_with_ids_and_relative_paths(index, searcher, queries_dir):
    first, second, third = GROUND_TRUTH[:3]
    absolute = str(queries_dir / third["image"])
    (queries_dir / "sub").mkdir()
    lines = [
        {"image": f"../{first['image']}", "box": first["box"], "id": "first"},
        {"image": f"../{second['image']}", "id": 2},  # whole image
        {"image": absolute, "box": third["box"]},  # absolute, no id
        {"image": f"../{first['image']}", "box": second["box"], "id": ["any", "json"]},
    ]
    jsonl = queries_dir / "sub" / "batch.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines[:2]) + "\n\n" + "\n".join(map(json.dumps, lines[2:])))
    code, records, stderr = _batch(index, "--batch", jsonl, "--top-k", 4)
    assert code == 0 and stderr.count("error") == 0
    assert [r["query"] for r in records] == [1, 2, 4, 5]  # 1-based lines; the blank line 3 is skipped
    assert [r["id"] for r in records] == ["first", 2, None, ["any", "json"]]
    assert [r["image"] for r in records] == [str(queries_dir / q["image"]) for q in (first, second, third, first)]
    assert [r["box"] for r in records] == [first["box"], None, third["box"], second["box"]]
    for record, line in zip(records, lines):
        image = queries_dir / Path(line["image"]).name
        assert _ids(record["results"]) == _ids(searcher.query(image, line.get("box"), top_k=4))
        assert [r["rank"] for r in record["results"]] == [1, 2, 3, 4]

    csv = queries_dir / "sub" / "batch.csv"
    rows = [f"../{first['image']},{','.join(map(str, first['box']))},first", f"../{second['image']},,,,,2"]
    csv.write_text("image,x1,y1,x2,y2,id\n" + "\n".join(rows) + "\n")
    code, from_csv, _ = _batch(index, "--batch", csv, "--top-k", 4)
    assert code == 0 and [r["query"] for r in from_csv] == [2, 3]  # the header is line 1
    assert [r["id"] for r in from_csv] == ["first", "2"]  # CSV cells are text
    assert [r["results"] for r in from_csv] == [r["results"] for r in records[:2]]


@pytest.mark.parametrize("group", ["image", "object"])
def test_query_many_equals_one_query_at_a_time(searcher, group, monkeypatch):
    reads, load = [], queries_module.load_image
    monkeypatch.setattr(queries_module, "load_image", lambda path: reads.append(path) or load(path))
    queries = [Query(QUERY / q["image"], q["box"]) for q in GROUND_TRUTH[:8]]
    queries += [Query(QUERY / GROUND_TRUTH[0]["image"]), Query(GALLERY / "scene_008.jpg")]  # whole images
    answers = searcher.query_many(queries, top_k=6, group=group, batch_size=4)  # several batches, the last short
    assert sorted(map(str, reads)) == sorted({str(q.image) for q in queries})  # each image read once
    for query, answer in zip(queries, answers, strict=True):
        alone = searcher.query(query.image, query.box, top_k=6, group=group)
        assert [r.to_dict() for r in answer] == [r.to_dict() for r in alone]
        if group == "image":
            assert len({r.image for r in answer}) == 6
    assert len(answers) == len(queries)


@pytest.mark.parametrize("group", ["image", "object"])
def test_rank_many_equals_rank_row_by_row_also_when_a_row_needs_a_larger_search(searcher, group, monkeypatch):
    snap = searcher.snapshot
    ids = np.concatenate([snap.vectors.ids()[:6], snap.vectors.ids()[-6:]])  # six of the grey grid, six real objects
    vectors = snap.vectors.reconstruct(ids)
    one_by_one = [rank(snap, vector, 3, group) for vector in vectors]
    calls = []
    search = snap.vectors.search
    monkeypatch.setattr(snap.vectors, "search", lambda q, k: calls.append((len(q), k)) or search(q, k))
    many = rank_many(snap, vectors, 3, group)
    assert [[r.to_dict() for r in row] for row in many] == [[r.to_dict() for r in row] for row in one_by_one]
    assert [len(row) for row in many] == [3] * 12
    assert calls[0] == (12, 3 if group == "object" else 24)
    if group == "image":  # the grid's 40 equal vectors fill a first search of 24 objects: searched again
        assert [count for count, _ in calls[1:]] == [6] and [r.image for r in many[0]][0].endswith(CROWDED)
    assert rank_many(snap, vectors[:0], 3, group) == []


def test_a_bad_query_is_its_own_error_line_and_the_others_go_on(index, queries_dir):
    good = GROUND_TRUTH[0]
    lines = [
        json.dumps({"image": good["image"], "box": good["box"], "id": "ok"}),
        "{not json",
        json.dumps({"image": "missing.jpg", "id": "gone"}),
        json.dumps({"image": good["image"], "box": [0, 0, 5000, 10]}),
        json.dumps({"image": good["image"], "box": [1, 2, 3]}),
        json.dumps({"image": good["image"], "time": 12.5}),
        json.dumps({"image": good["image"], "boxes": [1, 2, 3, 4]}),
        json.dumps({"image": good["image"]}),
    ]
    batch = queries_dir / "batch.json"
    batch.write_text("\n".join(lines))
    code, records, stderr = _batch(index, "--batch", batch, "--top-k", 2)
    assert code == 1 and stderr.strip().splitlines()[-1] == "error: 6 of 8 queries failed; their lines say why"
    assert [r["query"] for r in records] == list(range(1, 9))
    assert [("results" in r) for r in records] == [True, False, False, False, False, False, False, True]
    errors = {r["query"]: r["error"] for r in records if "error" in r}
    assert errors[2] == f"{batch} line 2: not JSON (Expecting property name enclosed in double quotes at column 2)"
    assert errors[3] == f"{queries_dir / 'missing.jpg'}: cannot be read (No such file or directory)"
    assert records[2]["id"] == "gone"
    assert errors[4].startswith(f"{queries_dir / good['image']}: box 0,0,5000,10 lies outside the 480x360 image")
    assert (
        errors[5] == f"{batch} line 5: box [1, 2, 3] must be four numbers [x1, y1, x2, y2], or null for the whole image"
    )
    assert errors[6].startswith(f"{queries_dir / good['image']}: a time (12.5 s) picks a frame of a video")
    assert errors[7] == f"{batch} line 7: unknown key 'boxes': use image, box, time and id"
    assert all("\n" not in message for message in errors.values())


def test_bad_csv_rows_are_their_own_errors(queries_dir):
    image = GROUND_TRUTH[0]["image"]
    batch = queries_dir / "q.csv"
    batch.write_text(f"ID,image,x1,y1,x2,y2,time\na,{image},1,,3,4,\nb,{image},1,2\nc,{image},,,,,x\nd,{image},,,,,\n")
    lines = read_batch_file(batch)
    # a row of another length has no reliable id; the others keep theirs; the header's names ignore case
    assert [(line.number, line.id) for line in lines] == [(2, "a"), (3, None), (4, "c"), (5, "d")]
    assert [str(line.query) for line in lines[:3]] == [
        f"{batch} line 2: box '1,,3,4' must be four numbers x1,y1,x2,y2, or four empty cells for the whole image",
        f"{batch} line 3: has 4 values, but the header names 7 columns",
        f"{batch} line 4: time 'x' must be a number of seconds",
    ]
    assert lines[3].query == Query(str(queries_dir / image), None, None)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("none.jsonl", None, "{path}: cannot be read (No such file or directory)"),
        ("q.txt", "x", "{path}: unknown batch file type '.txt': use .jsonl (or .json) for JSON lines or .csv"),
        ("q.csv", "a.jpg,1,2,3,4\n", "{path}: no header; the first line must name the columns image,x1,y1,x2,y2"),
        ("q.csv", "image,x1,y1\n", "{path}: header 'image,x1,y1': the box needs all of x1, y1, x2, y2"),
        ("q.csv", "image,colour\n", "{path}: header 'image,colour': unknown column 'colour'"),
        ("q.jsonl", "\n \n", "{path}: holds no queries"),
        ("q.json", '[{"image": "a.jpg"}]', "{path}: a JSON array; write one JSON object per line"),
        ("q.jsonl", b"\xff\xfe", "{path}: not UTF-8 text"),
    ],
)
def test_a_malformed_file_is_one_error_line_with_status_1(index, tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, records, stderr = _batch(index, "--batch", path)
    assert code == 1 and records == []
    assert stderr.count("\n") == 1 and stderr.startswith("error: " + message.format(path=path))


@pytest.mark.parametrize(
    "args, message",
    [
        (["{image}", "--batch", "{batch}"], "--batch FILE takes its images, boxes and times from FILE: leave out IMAGE"),
        (
            ["--batch", "{batch}", "--box", "1,2,3,4"],
            "--batch FILE takes its images, boxes and times from FILE: leave out --box",
        ),
        ([], "missing argument 'IMAGE' (or --batch FILE)"),
    ],
)
def test_image_and_batch_together_or_neither_is_a_usage_error(index, queries_dir, args, message):
    batch = queries_dir / "q.jsonl"
    batch.write_text(json.dumps({"image": GROUND_TRUTH[0]["image"]}))
    image = queries_dir / GROUND_TRUTH[0]["image"]
    code, records, stderr = _batch(index, *[a.format(image=image, batch=batch) for a in args])
    assert code == 2 and records == []
    assert stderr == f"error: {message} (see 'retrieval query --help')\n"


def test_group_object_applies_to_every_query(index, searcher, queries_dir):
    crowded = index.parent / "gallery" / CROWDED
    batch = queries_dir / "q.jsonl"
    boxes = [[0, 0, 64, 80], [80, 96, 144, 176]]  # two of the grey grid's boxes
    batch.write_text("\n".join(json.dumps({"image": str(crowded), "box": box}) for box in boxes))
    code, records, _ = _batch(index, "--batch", batch, "--group", "object", "--top-k", 5)
    assert code == 0
    for record, box in zip(records, boxes):
        assert _ids(record["results"]) == _ids(searcher.query(crowded, box, top_k=5, group="object"))
        # objects, not images: five of the grey grid's equal boxes (with --group image: one, then other images)
        assert {r["image"] for r in record["results"]} == {str(crowded)}
        assert [r["score"] for r in record["results"]] == pytest.approx([1.0] * 5, abs=1e-5)


def test_query_many_reports_errors_as_values_and_checks_options_first(searcher):
    good = Query(QUERY / GROUND_TRUTH[0]["image"], GROUND_TRUTH[0]["box"])
    answers = searcher.query_many([Query("missing.jpg"), good, Query(good.image, (5, 5, 5, 9))], top_k=1)
    assert isinstance(answers[0], ImageError) and isinstance(answers[2], BoxError)
    assert _ids(answers[1]) == _ids(searcher.query(good.image, good.box, top_k=1))
    assert searcher.query_many([]) == []
    with pytest.raises(RetrievalError, match="--top-k 0 must be at least 1"):
        searcher.query_many([good], top_k=0)
    assert issubclass(QueryFileError, RetrievalError)
