"""Real phone photos from ../shared/data/grocery index without error (skipped where the folder is absent)."""

from retrieval import IndexSettings, Searcher, build_index

from .conftest import SMALL_MAX_SIZE, SMALL_MIN_SIZE


def test_all_real_photos_index_whole_with_resnet50(grocery, tmp_path):
    summary = build_index(
        grocery / "val",
        tmp_path / "index",
        IndexSettings(embedder="resnet50", objects="whole", weights="random", device="cpu"),
        progress=False,
    )
    photos = [p for p in (grocery / "val").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    assert summary.skipped == []
    assert summary.images == len(photos) == 296
    assert summary.objects == 296


def test_real_photos_detect_and_roi_embed(grocery, tmp_path):
    gallery = grocery / "val" / "Fruit" / "Apple"
    settings = IndexSettings(
        embedder="roi",
        objects="detect",
        weights="random",
        score_threshold=0.0,
        max_objects=3,
        min_size=SMALL_MIN_SIZE,
        max_size=SMALL_MAX_SIZE,
        device="cpu",
    )
    summary = build_index(gallery, tmp_path / "index", settings, progress=False)
    photos = sorted(gallery.rglob("*.jpg"))
    assert summary.skipped == [] and summary.images == len(photos) and summary.objects == 3 * len(photos)
    searcher = Searcher(tmp_path / "index", device="cpu")
    snapshot = searcher.snapshot
    (top,) = searcher.query(
        snapshot.absolute_path(snapshot.object_image[0]), snapshot.boxes[0].tolist(), top_k=1, group="object"
    )
    assert top.object_id == int(snapshot.object_ids[0]) and top.score >= 0.999
