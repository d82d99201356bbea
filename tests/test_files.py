import os

import pytest

from retrieval.errors import RetrievalError
from retrieval.sources.folder import walk_gallery


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_walk_is_recursive_sorted_and_matches_extensions_in_any_case(tmp_path):
    for name in [
        "b.JPG",
        "a.jpeg",
        "sub/c.Png",
        "sub/deeper/d.webp",
        "e.tif",
        "f.TIFF",
        "g.bmp",
        "notes.txt",
        "h.GIF",
        "h.png.txt",
        "i.jpg.bak",
    ]:
        touch(tmp_path / name)
    listing = walk_gallery(tmp_path)
    assert listing.images == ["a.jpeg", "b.JPG", "e.tif", "f.TIFF", "g.bmp", "h.GIF", "sub/c.Png", "sub/deeper/d.webp"]
    assert listing.problems == []
    assert listing.root == tmp_path


def test_symlinked_folder_loop_is_reported_once_and_not_followed(tmp_path):
    touch(tmp_path / "sub" / "x.jpg")
    os.symlink(tmp_path, tmp_path / "sub" / "back")
    listing = walk_gallery(tmp_path)
    assert listing.images == ["sub/x.jpg"]
    assert [path for path, _ in listing.problems] == ["sub/back"]
    assert "already walked" in listing.problems[0][1]


def test_symlinked_folder_elsewhere_is_followed(tmp_path):
    outside = tmp_path / "outside"
    touch(outside / "y.png")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    os.symlink(outside, gallery / "linked")
    assert walk_gallery(gallery).images == ["linked/y.png"]


def test_excluded_folder_is_not_entered(tmp_path):
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "index" / "b.jpg")
    assert walk_gallery(tmp_path, exclude=(tmp_path / "index",)).images == ["a.jpg"]


def test_missing_gallery_is_a_clear_error(tmp_path):
    with pytest.raises(RetrievalError, match="does not exist or is not a folder"):
        walk_gallery(tmp_path / "nope")
