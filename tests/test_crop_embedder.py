"""The crop embedder shared by every backbone: crops, pooling and multi-scale, each checked against the plain path."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from retrieval.cli.main import main
from retrieval.errors import SettingsError
from retrieval.index.layout import active_store
from retrieval.models.crop_embedder import CropEmbedder, CropOptions, Trunk, crop_sides
from retrieval.models.crops import box_with_margin, crop_box, pad
from retrieval.models.weights import seeded_init
from retrieval.settings import IndexSettings

from tests.conftest import GALLERY

CPU = torch.device("cpu")


def tiny_trunk(output: str = "map") -> Trunk:
    """A seeded two-layer CNN ending in a ReLU: a ``(B, 8, S/4, S/4)`` map, or its flattened ``tokens``."""
    with seeded_init():
        layers = [nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()]
    if output == "tokens":
        layers.append(_Tokens())
    return Trunk(nn.Sequential(*layers), output, 8, {"source": "random"}, input_size=32)


class _Tokens(nn.Module):
    """``(B, C, h, w)`` → ``(B, 1 + h*w, C)``: a CLS token (the channel means) then the patch tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x.flatten(2).transpose(1, 2)
        return torch.cat([patches.mean(1, keepdim=True), patches], dim=1)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(90, 120, 3), dtype=np.uint8)


BOXES = np.array([[0, 0, 60, 40], [30, 20, 110, 85], [5.5, 7.2, 20.1, 80.9]], dtype=np.float32)


def embed(photo: np.ndarray, output: str = "map", **options) -> np.ndarray:
    embedder = CropEmbedder(tiny_trunk(output), CropOptions(**options), CPU, "fp32")
    return embedder.embed([photo], [BOXES])[0]


def test_vectors_are_unit_rows_one_per_box(photo):
    vectors = embed(photo)
    assert vectors.shape == (3, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_gem_with_p_1_equals_gap(photo):
    np.testing.assert_allclose(embed(photo, pooling="gem", gem_p=1.0), embed(photo, pooling="gap"), atol=1e-5)


def test_pooling_choices_differ_and_mac_is_the_channel_maximum(photo):
    gap_vectors, mac_vectors, gem_vectors = (embed(photo, pooling=p) for p in ("gap", "mac", "gem"))
    assert not np.allclose(gap_vectors, mac_vectors) and not np.allclose(gap_vectors, gem_vectors)
    crops = torch.from_numpy(np.stack([crop_box(photo, b, 32) for b in BOXES])).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(tiny_trunk().mean).view(1, 3, 1, 1), torch.tensor(tiny_trunk().std).view(1, 3, 1, 1)
    with torch.inference_mode():
        features = tiny_trunk().module((crops - mean) / std)
    expected = torch.nn.functional.normalize(features.amax(dim=(2, 3)), dim=1).numpy()
    np.testing.assert_allclose(mac_vectors, expected, atol=1e-5)


def test_multi_scale_with_one_repeated_scale_equals_single_scale(photo):
    np.testing.assert_allclose(embed(photo, scales=(1.0, 1.0)), embed(photo), atol=1e-6)


def test_multi_scale_is_the_renormalised_mean_of_each_scale(photo):
    both = embed(photo, scales=(1.0, 0.5))
    full, half = embed(photo), embed(photo, input_size=16)
    expected = (full + half) / np.linalg.norm(full + half, axis=1, keepdims=True)
    np.testing.assert_allclose(both, expected, atol=1e-6)


def test_token_trunks_pool_cls_or_the_patch_tokens(photo):
    tokens_gap, map_gap = embed(photo, "tokens", pooling="gap"), embed(photo, "map", pooling="gap")
    np.testing.assert_allclose(tokens_gap, map_gap, atol=1e-5)  # the mean of the patch tokens is GAP of the map
    np.testing.assert_allclose(embed(photo, "tokens", pooling="auto"), map_gap, atol=1e-5)  # our CLS is the mean
    np.testing.assert_allclose(embed(photo, "tokens", pooling="mac"), embed(photo, "map", pooling="mac"), atol=1e-5)


def test_pooling_that_does_not_fit_the_trunk_is_one_clear_line():
    with pytest.raises(SettingsError, match="--pooling cls needs a transformer's CLS token"):
        CropEmbedder(tiny_trunk("map"), CropOptions(pooling="cls"), CPU, "fp32")
    vector_trunk = Trunk(nn.Flatten(), "vector", 8, {}, input_size=32)
    with pytest.raises(SettingsError, match="gives its own pooled vector"):
        CropEmbedder(vector_trunk, CropOptions(pooling="gem"), CPU, "fp32")


def test_crop_sides_are_multiples_of_the_patch_size():
    assert crop_sides(224, (1.0, 0.707, 0.5), 14) == [224, 154, 112]
    assert crop_sides(224, (1.0, 0.5)) == [224, 112]
    with pytest.raises(SettingsError, match="--input-size 200 is not a multiple of the model's patch size 14: use 196"):
        crop_sides(200, (1.0,), 14)


def test_margin_grows_the_box_on_every_side_within_the_image():
    assert box_with_margin((10, 20, 30, 60), 0.25, 100, 100) == (5.0, 10.0, 35.0, 70.0)
    assert box_with_margin((0, 0, 100, 50), 0.5, 100, 60) == (0.0, 0.0, 100.0, 60.0)


def test_pad_keeps_the_aspect_ratio_and_fills_with_the_mean():
    crop = np.full((10, 40, 3), 200, dtype=np.uint8)
    padded = pad(crop, 32, (124, 116, 104))
    assert padded.shape == (32, 32, 3)
    assert (padded[12:20] == 200).all()  # 40 → 32 wide, 10 → 8 tall, centred
    assert (padded[:12] == (124, 116, 104)).all() and (padded[20:] == (124, 116, 104)).all()


def test_margin_and_pad_change_the_vectors(photo):
    plain = embed(photo)
    assert not np.allclose(embed(photo, margin=0.2), plain)
    assert not np.allclose(embed(photo, crop="pad"), plain)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"pooling": "gem"}, "--pooling does not apply to --embedder roi"),
        ({"embedder": "resnet50", "gem_p": 4.0}, "--gem-p 4.0 is GeM's exponent: give it with --pooling gem"),
        ({"embedder": "resnet50", "pooling": "gem", "gem_p": 0.5}, "--gem-p 0.5 must lie between 1 and 100"),
        ({"embedder": "resnet50", "scales": ()}, "--scales () must be one or more numbers"),
        ({"embedder": "resnet50", "scales": (1.0, 9.0)}, "--scales 9 must lie between 0.1 and 4"),
        ({"embedder": "resnet50", "margin": -0.1}, "--margin -0.1 must lie between 0 and 1"),
        ({"embedder": "resnet50", "crop": "fit"}, "unknown --crop 'fit': use one of squash, pad"),
        ({"embedder": "resnet50", "input_size": 8}, "--input-size 8 must lie between 32 and 2048"),
        ({"whiten": -2}, "--whiten -2 must be at least -1"),
        ({"embedder": "roi:x"}, "embedder 'roi' takes no ':' argument: use roi"),
    ],
)
def test_crop_settings_are_checked(values, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        IndexSettings(**values)


def test_search_space_settings_do_not_change_the_vector_settings():
    plain = IndexSettings(embedder="resnet50")
    assert IndexSettings(embedder="resnet50", whiten=64, dba=5).vector_settings() == plain.vector_settings()
    assert IndexSettings(embedder="resnet50", pooling="gem").vector_settings() != plain.vector_settings()


def test_index_records_pooling_and_scales_and_query_uses_them(tmp_path):
    index = tmp_path / "index"
    options = ["--embedder", "resnet50", "--weights", "random", "--objects", "whole", "--device", "cpu"]
    crop = ["--pooling", "gem", "--gem-p", "2", "--scales", "1,0.5", "--crop", "pad", "--margin", "0.1"]
    result = CliRunner().invoke(main, ["index", str(GALLERY), "--index", str(index), *options, *crop, "-q"])
    assert result.exit_code == 0, result.output
    settings = json.loads((active_store(index) / "manifest.json").read_text())["settings"]
    assert (settings["pooling"], settings["gem_p"], settings["scales"]) == ("gem", 2.0, [1.0, 0.5])
    assert (settings["crop"], settings["margin"]) == ("pad", 0.1)
    image = sorted(GALLERY.glob("*.jpg"))[0]
    result = CliRunner().invoke(main, ["query", str(image), "--index", str(index), "--top-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    (top,) = json.loads(result.output)["results"]
    assert top["image"] == str(image) and top["score"] > 0.9999


def test_bad_scales_on_the_command_line_are_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        main, ["index", str(GALLERY), "--index", str(tmp_path / "i"), "--embedder", "resnet50", "--scales", "1,x"]
    )
    assert result.exit_code == 2
    assert "'1,x' is not a list of numbers such as 1,0.707,0.5" in result.output


def test_whiten_takes_a_dimension_or_all_or_nothing(tmp_path):
    index = tmp_path / "index"
    base = ["index", str(GALLERY), "--index", str(index), "--embedder", "resnet50", "--weights", "random"]
    base += ["--objects", "whole", "--device", "cpu", "-q"]
    manifest = lambda: json.loads((active_store(index) / "manifest.json").read_text())["settings"]  # noqa: E731
    for given, recorded in ((["--whiten"], -1), (["--whiten", "8"], 8), (["--whiten", "all"], -1), ([], -1)):
        result = CliRunner().invoke(main, [*base[:4], *given, *base[4:]])
        assert result.exit_code == 0, result.output
        assert manifest()["whiten"] == recorded
    result = CliRunner().invoke(main, [*base, "--whiten", "some"])
    assert result.exit_code == 2 and "'some' is neither a number of dimensions nor 'all'" in result.output


def test_a_hub_checkout_given_relative_is_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = IndexSettings(embedder="hub:./repo:tiny_vit", objects="whole").resolved()
    assert resolved.embedder == f"hub:{tmp_path / 'repo'}:tiny_vit"
    github = IndexSettings(embedder="hub:owner/repo@v1:model", objects="whole").resolved()
    assert github.embedder == "hub:owner/repo@v1:model"
