"""Real phone photos from ../shared/data/grocery index without error (skipped where the folder is absent)."""

from retrieval import Searcher, build_index
from retrieval.testing.rows import all_rows

from tests.conftest import RANDOM_WHOLE, random_detect


def test_all_real_photos_index_whole_with_resnet50(grocery, tmp_path):
    summary = build_index(
        grocery / "val",
        tmp_path / "index",
        RANDOM_WHOLE,
        progress=False,
    )
    photos = [p for p in (grocery / "val").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    assert summary.skipped == []
    assert summary.images == len(photos) == 296
    assert summary.objects == 296


def test_real_photos_detect_and_roi_embed(grocery, tmp_path):
    gallery = grocery / "val" / "Fruit" / "Apple"
    settings = random_detect(max_objects=3)
    summary = build_index(gallery, tmp_path / "index", settings, progress=False)
    photos = sorted(gallery.rglob("*.jpg"))
    assert summary.skipped == [] and summary.images == len(photos) and summary.objects == 3 * len(photos)
    searcher = Searcher(tmp_path / "index", device="cpu")
    snapshot = searcher.snapshot
    table = all_rows(snapshot)
    (top,) = searcher.query(
        snapshot.gallery_root / table.image_paths[int(table.object_image[0])], table.boxes[0].tolist(), top_k=1,
        group="object",
    )
    assert top.object_id == int(table.object_ids[0]) and top.score >= 0.999
