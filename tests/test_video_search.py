"""Finding things in video: frame results with their video, time and span, grouping by item (a video by its best
frame), consecutive frames merged under ``--group object``, a video frame as the query (``--time``), and video
spans in ground truth.

The grouping functions are checked on hand-made arrays and against an obvious slow version; the rest on a real
index of a scene video (``write_scene_video``: 10 s at 10 fps, the object from 4.0 s on, indexed at 1 frame/s,
no frame skipped) and two demo photos, with random weights: only what random weights can show is asserted
(the identical frame is found; fields, ranks, merging, formatting, errors), never quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from retrieval import Query, Searcher, build_index, evaluate
from retrieval.cli.main import main
from retrieval.errors import GroundTruthError, ImageError, SettingsError
from retrieval.search.grouping import above_midpoint, first_of_each, frame_runs, group_hits, run_ends
from retrieval.search.queries import load_query_image
from retrieval.settings import IndexSettings
from retrieval.testing.videos import write_scene_video
from retrieval.videos import VideoError, VideoFile
from tests.conftest import GALLERY

STILLS = ["scene_000.jpg", "scene_001.jpg"]
FRAME_TIMES = [float(t) for t in range(10)]  # sampled at 1 frame/s


# --- the grouping functions on hand-made arrays ---------------------------------------------------------------

# Two queries' candidates, each query's by descending score. Query 0: frames 4, 5, 3 of video 7 (and a second
# object of frame 5), a still (item 20), frame 8 (after a gap), frames 0 and 1 of video 9 (on either side of
# that video's midpoint), frame 6 of video 7 below that video's midpoint (0.95 + 0.10) / 2.
QUERY = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
SCORE = np.array([0.95, 0.94, 0.90, 0.89, 0.88, 0.87, 0.30, 0.20, 0.10, 0.5, 0.4], np.float32)
VIDEO = np.array([7, 7, -1, 7, 7, 7, 9, 9, 7, 7, -1])
POSITION = np.array([4, 5, -1, 3, 8, 5, 0, 1, 6, 4, -1])
ITEM = np.array([104, 105, 20, 103, 108, 105, 900, 901, 106, 104, 21])


def test_above_midpoint_is_per_query_and_video():
    assert above_midpoint(QUERY, VIDEO, SCORE).tolist() == [True] * 7 + [False, False, True, True]
    empty = np.zeros(0, np.int64)
    assert above_midpoint(empty, empty, np.zeros(0, np.float32)).tolist() == []


def test_frame_runs_join_neighbouring_frames_of_one_video_query_and_side():
    runs = frame_runs(QUERY, VIDEO, POSITION, above_midpoint(QUERY, VIDEO, SCORE))
    groups = sorted(sorted(np.flatnonzero(runs == run).tolist()) for run in set(runs.tolist()))
    # frames 3, 4, 5 (both objects of 5) of video 7 are one run; frame 8 (a gap before it), frame 6 (below the
    # midpoint), video 9's two frames (either side of its midpoint), the still, and query 1's are runs of their own
    assert groups == [[0, 1, 3, 5], [2], [4], [6], [7], [8], [9], [10]]
    assert sorted(set(runs.tolist())) == list(range(8))


def test_first_of_each_keeps_each_querys_first_per_key_in_candidate_order():
    key = np.array([5, 6, 5, 7, 6, 5, 9, 9, 5, 5, 5])
    assert first_of_each(QUERY, key).tolist() == [0, 1, 3, 6, 9]


def test_run_ends_are_the_lowest_and_highest_frame_of_each_run():
    runs = np.array([0, 0, 1, 0, 2])
    position = np.array([4, 5, -1, 3, 8])
    start, end = run_ends(runs, position)
    assert start.tolist() == [3, 2, 4] and end.tolist() == [1, 2, 4]


def test_group_hits_by_item_and_by_object():
    hits, start, end = group_hits(QUERY, SCORE, ITEM, VIDEO, POSITION, "image")
    assert hits.tolist() == [0, 2, 6, 9, 10]  # video 7 by its best frame, the still, video 9; query 1's two
    assert POSITION[start].tolist() == [3, -1, 0, 4, -1] and POSITION[end].tolist() == [5, -1, 0, 4, -1]
    hits, start, end = group_hits(QUERY, SCORE, ITEM, VIDEO, POSITION, "object")
    assert hits.tolist() == [0, 2, 4, 6, 7, 8, 9, 10]  # frames 3-5 of video 7 as one hit, the others apart
    assert POSITION[start].tolist() == [3, -1, 8, 0, 1, 6, 4, -1]
    assert POSITION[end].tolist() == [5, -1, 8, 0, 1, 6, 4, -1]


def _slow_group_hits(query, score, item, video, position, group):
    """``group_hits`` the obvious way: each candidate's run grown frame by frame, hits kept by key in order."""
    n = len(query)
    same_video = [(query == query[i]) & (video == video[i]) for i in range(n)]
    level = [score[i] >= (score[same_video[i]].max() + score[same_video[i]].min()) / 2 for i in range(n)]

    def run(i):
        if video[i] == -1:
            return [i]
        same = [j for j in range(n) if (query[j], video[j], level[j]) == (query[i], video[i], level[i])]
        held = {position[j] for j in same}
        low = high = position[i]
        while low - 1 in held:
            low -= 1
        while high + 1 in held:
            high += 1
        return [j for j in same if low <= position[j] <= high]

    seen, found = set(), []
    for i in range(n):
        key = (query[i], tuple(run(i)) if group == "object" else (item[i] if video[i] == -1 else -video[i] - 10**6))
        if key not in seen:
            seen.add(key)
            members = run(i)
            found.append(
                (i, min(members, key=lambda j: (position[j], j)), max(members, key=lambda j: (position[j], j)))
            )
    return found


@pytest.mark.parametrize("group", ["image", "object"])
@pytest.mark.parametrize("seed", range(20))
def test_group_hits_equals_the_slow_obvious_way(group, seed):
    rng = np.random.default_rng(seed)
    query = np.repeat(np.arange(3), 15)
    score = np.concatenate([np.sort(rng.random(15))[::-1] for _ in range(3)]).astype(np.float32)
    video = rng.choice([-1, 5, 6, -3], size=len(query))
    position = np.where(video == -1, -1, rng.integers(0, 8, len(query)))
    item = np.where(video == -1, 1000 + rng.integers(0, 4, len(query)), 100 * np.abs(video) + position)
    hits, start, end = group_hits(query, score, item, video, position, group)
    expected = _slow_group_hits(query, score, item, video, position, group)
    assert [h for h, _, _ in expected] == hits.tolist()
    assert [position[s] for _, s, _ in expected] == position[start].tolist()
    assert [position[e] for _, _, e in expected] == position[end].tolist()


# --- a real index of a scene video and two photos ---------------------------------------------------------------


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("video-search")
    folder = root / "gallery"
    folder.mkdir()
    for name in STILLS:
        shutil.copy(GALLERY / name, folder / name)
    scene = write_scene_video(folder / "clip.mp4")
    Image.fromarray(scene.sprite).save(root / "sprite.png")
    settings = IndexSettings(
        embedder="efficientnet_lite0", objects="whole", weights="random", device="cpu", video_min_change=0
    )
    build_index(folder, root / "index", settings, progress=False)
    return root


@pytest.fixture(scope="module")
def searcher(gallery) -> Searcher:
    return Searcher(gallery / "index", device="cpu")


def _clip(gallery: Path) -> str:
    return str(gallery / "gallery" / "clip.mp4")


def test_the_frame_itself_finds_its_video_at_its_time_with_a_span_where_the_object_is(gallery, searcher):
    results = searcher.query(_clip(gallery), None, top_k=10, time=6.0)
    top = results[0]
    assert (top.video, top.image, top.item, top.frame, top.time) == (
        _clip(gallery),
        _clip(gallery),
        "clip.mp4#t=6.000",
        60,
        6.0,
    )
    assert top.score == pytest.approx(1.0, abs=1e-4)
    assert 4.0 <= top.span[0] <= top.time <= top.span[1] <= 9.0
    # grouped by item: the video once, each photo once, photos without video fields
    assert sorted(Path(r.image).name for r in results) == ["clip.mp4", *STILLS]
    assert all((r.video, r.frame, r.time, r.span) == (None,) * 4 for r in results[1:])
    assert list(top.to_dict())[-4:] == ["video", "frame", "time", "span"]
    assert results[1].to_dict()["span"] is None


def test_group_object_merges_consecutive_frames_into_hits_whose_spans_cover_them(gallery, searcher):
    results = searcher.query(_clip(gallery), None, top_k=10, group="object", time=6.0)
    frames = [r for r in results if r.video is not None]
    assert sorted(Path(r.image).name for r in results if r.video is None) == STILLS
    assert 1 < len(frames) < len(FRAME_TIMES)  # each indexed frame is a candidate: they merge into fewer hits
    assert frames[0].time == 6.0 and frames[0].span[1] - frames[0].span[0] >= 1.0
    covering = [[r for r in frames if r.span[0] <= t <= r.span[1]] for t in FRAME_TIMES]
    assert [len(hits) for hits in covering] == [1] * len(FRAME_TIMES)  # disjoint spans covering every frame
    assert all(r.span[0] <= r.time <= r.span[1] for r in frames)
    assert [r.rank for r in results] == list(range(1, len(results) + 1))


def test_query_many_with_frames_equals_one_query_at_a_time(gallery, searcher):
    queries = [
        Query(_clip(gallery), None, 6.0),
        Query(_clip(gallery), [0, 0, 160, 120], 2.0),
        Query(gallery / "sprite.png"),
    ]
    for group in ("image", "object"):
        one_by_one = [searcher.query(q.image, q.box, top_k=3, group=group, time=q.time) for q in queries]
        many = searcher.query_many(queries, top_k=3, group=group)
        assert [[r.to_dict() for r in row] for row in many] == [[r.to_dict() for r in row] for row in one_by_one]


def test_a_query_frame_is_the_videos_frame_at_that_time(gallery):
    loaded = load_query_image(_clip(gallery), 6.0)
    with VideoFile(_clip(gallery)) as video:
        assert np.array_equal(loaded.rgb, video.frame_at(6.0).rgb)
    assert (loaded.width, loaded.height) == (320, 240)


@pytest.mark.parametrize(
    "image, time, error, message",
    [
        ("clip.mp4", None, VideoError, "{clip} is a video: give --time SECONDS to pick the frame"),
        ("clip.mp4", 99.0, VideoError, "{clip}: no frame at 99 s (the video lasts 10.0 s); give a time within it"),
        ("clip.mp4", -1.0, SettingsError, "--time -1 must be at least 0"),
        ("scene_000.jpg", 2.0, ImageError, "{still}: a time (2 s) picks a frame of a video, but this is a still image"),
    ],
)
def test_a_time_that_does_not_fit_the_query_file_is_one_line(gallery, image, time, error, message):
    path = gallery / "gallery" / image
    with pytest.raises(error) as raised:
        load_query_image(path, time)
    text = str(raised.value)
    assert text.startswith(message.format(clip=path, still=path)) and "\n" not in text, text


# --- the command line ---------------------------------------------------------------------------------------------


def _query(gallery: Path, *args) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["query", "--index", str(gallery / "index"), "--device", "cpu", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_the_table_shows_the_time_and_span_of_frame_results(gallery, searcher):
    code, out, _ = _query(gallery, _clip(gallery), "--time", "6")
    header, first, *rest = out.splitlines()
    assert code == 0 and header.split() == ["rank", "score", "image", "time", "box", "label", "det", "id"]
    start, end = searcher.query(_clip(gallery), time=6.0)[0].span
    assert first.split()[:2] == ["1", "1.0000"] and first.split()[3:6] == [
        "00:06.0",
        f"(00:0{start:.1f}–00:0{end:.1f})",
        "0,0,320,240",
    ]
    assert [line.split()[3] for line in rest] == ["-", "-"]  # the photos: no time
    code, out, _ = _query(gallery, gallery / "gallery" / STILLS[0], "--top-k", "1")
    header, first = out.splitlines()
    assert code == 0 and header.split() == ["rank", "score", "image", "box", "label", "det", "id"]
    assert first.split()[2].endswith(STILLS[0])  # no frame in the results: the photo table as ever


def test_json_results_carry_video_frame_time_and_span(gallery):
    code, out, _ = _query(gallery, _clip(gallery), "--time", "6", "--json", "--top-k", "1")
    (result,) = json.loads(out)["results"]
    assert code == 0 and (result["video"], result["frame"], result["time"]) == (_clip(gallery), 60, 6.0)
    assert result["item"] == "clip.mp4#t=6.000" and len(result["span"]) == 2


@pytest.mark.parametrize(
    "time, message",
    [
        ([], "error: {clip} is a video: give --time SECONDS to pick the frame"),
        (["--time", "99"], "error: {clip}: no frame at 99 s (the video lasts 10.0 s); give a time within it"),
    ],
)
def test_a_video_query_without_a_fitting_time_is_one_error_line(gallery, time, message):
    code, out, err = _query(gallery, _clip(gallery), *time)
    assert (code, out, err) == (1, "", message.format(clip=_clip(gallery)) + "\n")


def test_batch_lines_with_a_time_query_video_frames(gallery, tmp_path):
    batch = tmp_path / "q.jsonl"
    lines = [{"image": _clip(gallery), "time": 6.0, "id": "frame"}, {"image": _clip(gallery), "id": "no time"}]
    batch.write_text("\n".join(json.dumps(line) for line in lines))
    code, out, err = _query(gallery, "--batch", batch, "--top-k", "2")
    first, second = (json.loads(line) for line in out.splitlines())
    assert code == 1 and (first["id"], first["time"], first["results"][0]["time"]) == ("frame", 6.0, 6.0)
    assert second == {
        "query": 2,
        "id": "no time",
        "error": f"{_clip(gallery)} is a video: give --time SECONDS to pick the frame",
    }
    csv = tmp_path / "q.csv"
    csv.write_text(f"image,time\n{_clip(gallery)},6\n")
    code, out, _ = _query(gallery, "--batch", csv, "--top-k", "1")
    assert code == 0 and json.loads(out)["results"][0]["item"] == "clip.mp4#t=6.000"
    code, _, err = _query(gallery, "--batch", csv, "--time", "6")
    assert code == 2 and "leave out --time" in err


# --- evaluate with video positives ----------------------------------------------------------------------------------


CLIP = "gallery/clip.mp4"  # relative to the ground truth, written beside the gallery folder
PHOTOS = [f"gallery/{name}" for name in STILLS]


@pytest.mark.parametrize(
    "positives, junk, ap",
    [
        ([{"video": CLIP, "start": 4.0, "end": 10.0}], [], 1.0),
        ([{"video": CLIP, "start": 0.0, "end": 3.0}], [], 0.0),  # the hit's time (6.0) lies outside
        ([CLIP], [], 1.0),  # the video at any time
        ([{"video": CLIP, "start": 0.0, "end": 3.0}, {"video": CLIP, "start": 5.5, "end": 6.5}], [], 1.0),
        (PHOTOS, [], (1 / 2 + 2 / 3) / 2),  # the video (the query's own frame) ranks first
        (PHOTOS, [{"video": CLIP, "start": 5.0, "end": 7.0}], 1.0),  # ... unless it is junk there
        (PHOTOS, [{"video": CLIP, "start": 0.0, "end": 5.0}], (1 / 2 + 2 / 3) / 2),
    ],
)
def test_a_video_hit_is_positive_or_junk_when_its_time_lies_in_a_span(gallery, searcher, positives, junk, ap):
    path = gallery / "gt.json"
    path.write_text(json.dumps({"queries": [{"image": CLIP, "time": 6.0, "positives": positives, "junk": junk}]}))
    report = evaluate(gallery / "index", path, searcher=searcher)
    (query,) = report["queries"]
    assert report["mAP"] == pytest.approx(ap) and query["time"] == 6.0
    assert query["positives"] == len({p if isinstance(p, str) else p["video"] for p in positives})


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"time": None, "positives": ["x.jpg"]},
            'queries[0]: {clip} is a video: give "time" (seconds) to pick the frame',
        ),
        ({"time": -2, "positives": ["x.jpg"]}, "queries[0] time -2 must be a number of seconds, 0 or more"),
        (
            {"positives": [{"video": "{clip}", "start": 5}]},
            'queries[0] \'positives\'[0] {{"video": "{clip}", "start": 5}} must be a path or a span',
        ),
        (
            {"positives": [{"video": "{clip}", "start": 5, "end": 4}]},
            "queries[0] 'positives'[0] span start 5, end 4: give seconds with 0 <= start <= end",
        ),
        (
            {"positives": ["a.jpg"], "junk": [{"video": "b.jpg", "start": 0, "end": 1}]},
            "queries[0] 'junk'[0] b.jpg is no video file (.avi, .mkv, .mov, .mp4, .webm): "
            "name a still image by its path alone",
        ),
        ({"positives": "{clip}"}, "queries[0] 'positives' must be a list of image paths, video paths and"),
        (
            {"positives": [{"video": "gallery/other.mp4", "start": 0, "end": 1}]},
            "queries[0] positive {other} is not a gallery image or video of this index",
        ),
    ],
)
def test_bad_video_entries_name_the_query_entry_and_the_fix(gallery, searcher, tmp_path, entry, message):
    clip, other = _clip(gallery), str(gallery / "gallery" / "other.mp4")
    entry = json.loads(json.dumps(entry).replace("{clip}", clip))
    path = gallery / "bad-gt.json"
    path.write_text(json.dumps({"queries": [{"image": clip, "time": 6.0, **entry}]}))
    with pytest.raises(GroundTruthError) as raised:
        evaluate(gallery / "index", path, searcher=searcher)
    text = str(raised.value)
    assert text.startswith(f"{path}: " + message.format(clip=clip, other=other)) and "\n" not in text, text
