"""The model zoo embedders ``torchvision:NAME`` and ``timm:NAME``, each checked against the plain library model.

Seeded random weights throughout: a trunk built inside ``seeded_init`` has the same tensors as the plain
model built there, so the reference is torchvision's (or timm's) own forward on the same input.
"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from click.testing import CliRunner
from torch import nn

from retrieval.cli.main import main
from retrieval.errors import SettingsError, WeightsError
from retrieval.models.backbones.torchvision_zoo import adapt_state, build_torchvision_trunk, builder_arguments
from retrieval.models.backbones.zoo import check_crop_sides
from retrieval.models.crop_embedder import IMAGENET_MEAN, IMAGENET_STD, CropEmbedder, CropOptions
from retrieval.models.registry import build_embedder
from retrieval.models.weights import ReadWeights, apply_weights, seeded_init
from retrieval.settings import IndexSettings

from tests.conftest import GALLERY

SIDE = 224
CPU = torch.device("cpu")


def crop_and_input(seed: int = 0, side: int = SIDE) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A random ``side`` x ``side`` image, the box covering it (its crop is the image itself) and the
    ``(1, 3, side, side)`` ImageNet-normalised input a plain model gets."""
    image = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return image, np.array([[0, 0, side, side]], dtype=np.float32), x


def embed(embedder, image: np.ndarray, box: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(embedder.embed([image], [box])[0])


def plain_model(name: str, **arguments) -> nn.Module:
    """torchvision's ``name`` with the seeded random weights ``--weights random`` has, in eval mode."""
    with seeded_init():
        return torchvision.models.get_model(name, weights=None, **arguments).eval()


def zoo_embedder(name: str, weights: str = "random", **settings):
    options = IndexSettings(embedder=name, objects="whole", weights=weights, device="cpu", precision="fp32", **settings)
    return build_embedder(options, CPU)


# The map each model computes before its classifier, from the plain model; and its width.
OWN_MAPS = {
    "resnet18": (lambda m, x: nn.Sequential(*list(m.children())[:-2])(x), 512),
    "mobilenet_v3_small": (lambda m, x: m.features(x), 576),
    "efficientnet_b0": (lambda m, x: m.features(x), 1280),
    "convnext_tiny": (lambda m, x: m.features(x), 768),
    "densenet121": (lambda m, x: F.relu(m.features(x)), 1024),
    "swin_t": (lambda m, x: m.permute(m.norm(m.features(x))), 768),
    "regnet_y_400mf": (lambda m, x: m.trunk_output(m.stem(x)), 440),
}


@pytest.mark.parametrize("name", sorted(OWN_MAPS))
def test_a_cnn_trunk_is_the_models_last_feature_map_before_its_classifier(name):
    own_map, width = OWN_MAPS[name]
    trunk = build_torchvision_trunk(name, "random")
    _, _, x = crop_and_input(side=96)  # any side: a small one is quick
    with torch.inference_mode():
        ours, expected = trunk.module(x), own_map(plain_model(name), x)
    assert (trunk.output, trunk.dimension, trunk.input_size, trunk.natural_pooling) == ("map", width, SIDE, "gap")
    assert ours.shape == expected.shape and ours.shape[1] == width
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


@pytest.mark.parametrize("name, head", [("resnet18", "fc"), ("resnet50", "fc")])
def test_resnet_vectors_are_the_models_normalised_pre_logits(name, head):
    """resnet50's Bottlenecks go through the CPU's fused convolutions; the plain model does not."""
    embedder = zoo_embedder(f"torchvision:{name}")
    image, box, x = crop_and_input()
    model = plain_model(name)
    setattr(model, head, nn.Identity())
    with torch.inference_mode():
        expected = F.normalize(model(x), dim=1)[0]
    assert embedder.dimension == expected.numel() and embedder.pooling == "gap"
    torch.testing.assert_close(embed(embedder, image, box)[0], expected, atol=2e-5, rtol=0)


def test_gem_with_p_1_equals_gap_and_mac_differs():
    trunk = build_torchvision_trunk("resnet18", "random")
    image, box, _ = crop_and_input(1)
    gap, gem, mac = (
        embed(CropEmbedder(trunk, CropOptions(pooling=pooling, gem_p=1.0), CPU, "fp32"), image, box)
        for pooling in ("gap", "gem", "mac")
    )
    torch.testing.assert_close(gem, gap, atol=1e-5, rtol=0)
    assert float((mac - gap).abs().max()) > 1e-2


@pytest.fixture(scope="module")
def vit():
    """``torchvision:vit_b_16``'s trunk, and the plain model with the encoder's tokens recorded."""
    trunk = build_torchvision_trunk("vit_b_16", "random")
    model = plain_model("vit_b_16")
    model.heads = nn.Identity()
    tokens = []
    model.encoder.register_forward_hook(lambda module, inputs, output: tokens.append(output))
    return trunk, model, tokens


def test_a_vit_gives_its_cls_token_by_default_and_pools_its_patch_tokens(vit):
    trunk, model, tokens = vit
    image, box, x = crop_and_input(2)
    with torch.inference_mode():
        cls = model(x)
    patches = tokens[-1][:, 1:]  # (1, 196, 768) after the CLS token
    assert (trunk.output, trunk.dimension, trunk.prefix_tokens, trunk.patch_size) == ("tokens", 768, 1, 16)
    assert patches.shape == (1, 14 * 14, 768)
    by_default = CropEmbedder(trunk, CropOptions(), CPU, "fp32")
    assert by_default.pooling == "cls"
    torch.testing.assert_close(embed(by_default, image, box), F.normalize(cls, dim=1), atol=2e-5, rtol=0)
    gap = CropEmbedder(trunk, CropOptions(pooling="gap"), CPU, "fp32")
    torch.testing.assert_close(embed(gap, image, box), F.normalize(patches.mean(1), dim=1), atol=2e-5, rtol=0)


def test_a_vit_refuses_crop_sides_other_than_its_own(vit):
    trunk = vit[0]
    check_crop_sides(trunk, CropOptions(), "torchvision:vit_b_16")  # its own 224 needs no trial
    with pytest.raises(SettingsError) as error:
        check_crop_sides(trunk, CropOptions(scales=(1.0, 0.5)), "torchvision:vit_b_16")
    expected = "torchvision:vit_b_16 cannot take 112x112 crops: use --input-size 0 (its own 224) and --scales 1"
    assert str(error.value) == expected


@pytest.mark.parametrize(
    "name, auxiliary_heads",
    [("resnet18", {}), ("googlenet", {}), ("inception_v3", {"aux_logits": True}), ("vit_b_16", {}),
     ("vit_h_14", {}), ("maxvit_t", {})],
)  # fmt: skip
def test_the_architecture_built_is_the_one_its_default_weights_fit(name, auxiliary_heads):
    """The parameter count torchvision records for the DEFAULT weights (Inception's counts its auxiliary head)."""
    default = torchvision.models.get_model_weights(name).DEFAULT
    arguments = builder_arguments(name, default) | auxiliary_heads
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None, **arguments)
    assert sum(p.numel() for p in model.parameters()) == default.meta["num_params"]


def test_torchvisions_own_checkpoint_layouts_load():
    """DenseNet checkpoints' old key names (``norm.1``) are renamed; Inception's auxiliary head is dropped."""
    densenet = plain_model("densenet121")
    new = densenet.state_dict()
    old = {  # torchvision's file: norm.1, relu.1, conv.1, ...; no batch counts
        re.sub(r"\.(norm|relu|conv)([12])\.", r".\1.\2.", key): value
        for key, value in new.items()
        if not key.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    apply_weights(densenet, adapt_state("densenet121", ReadWeights("embedder", {}, old)))  # strict: no key left over
    inception = plain_model("inception_v3", aux_logits=True, init_weights=False)
    adapted = adapt_state("inception_v3", ReadWeights("embedder", {}, inception.state_dict())).state
    assert adapted and not any(key.startswith("AuxLogits.") for key in adapted)
    assert len(adapted) < len(inception.state_dict())


def test_a_saved_state_dict_loads_into_the_whole_model(tmp_path):
    with seeded_init(1):  # other weights than --weights random's
        model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    image, box, x = crop_and_input(3)
    from_file = zoo_embedder("torchvision:resnet18", str(path))
    model.fc = nn.Identity()
    with torch.inference_mode():
        expected = F.normalize(model(x), dim=1)
    torch.testing.assert_close(embed(from_file, image, box), expected, atol=2e-5, rtol=0)
    assert from_file.identity["source"] == "file" and from_file.identity["path"] == str(path)
    assert float((embed(zoo_embedder("torchvision:resnet18"), image, box) - expected).abs().max()) > 1e-2


def test_default_weights_load_from_the_torch_cache(tmp_path, monkeypatch):
    """``default`` reads the DEFAULT weights' file from the torch cache (here a stand-in with GoogLeNet's
    auxiliary heads, as torchvision's file has them) without a download."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    default = torchvision.models.GoogLeNet_Weights.DEFAULT
    with seeded_init(1):
        model = torchvision.models.googlenet(aux_logits=True, transform_input=True, init_weights=False).eval()
    (tmp_path / "checkpoints").mkdir()
    torch.save(model.state_dict(), tmp_path / "checkpoints" / default.url.rsplit("/", 1)[1])
    image, box, x = crop_and_input(4)
    embedder = zoo_embedder("torchvision:googlenet", "default")
    model.fc = nn.Identity()
    with torch.inference_mode():
        expected = F.normalize(model(x), dim=1)
    torch.testing.assert_close(embed(embedder, image, box), expected, atol=2e-5, rtol=0)
    assert embedder.identity["source"] == "default" and embedder.identity["name"] == str(default)


def test_default_weights_offline_name_the_folder_to_put_them_in(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    with pytest.raises(WeightsError) as error:
        zoo_embedder("torchvision:resnet18", "default")
    message = str(error.value)
    assert f"in {tmp_path / 'checkpoints'}/" in message and "resnet18-" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "torchvision:nope",
            "unknown torchvision model 'nope': see torchvision.models.list_models(), "
            "e.g. resnet101, convnext_tiny, vit_b_16",
        ),
        ("torchvision:fasterrcnn_resnet50_fpn", "unknown torchvision model 'fasterrcnn_resnet50_fpn': see"),
        ("torchvision", "embedder 'torchvision' needs its NAME: torchvision:NAME"),
        ("timm:nope", "unknown timm model 'nope': see timm.list_models(), e.g. resnet50, convnext_tiny"),
        ("timm", "embedder 'timm' needs its NAME: timm:NAME"),
    ],
)
def test_an_unknown_or_missing_name_is_a_one_line_error(name, message):
    with pytest.raises(SettingsError) as error:
        zoo_embedder(name)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("name, natural", [("resnet18", "gap"), ("vit_tiny_patch16_224", "cls")])
def test_timm_vectors_are_timms_normalised_pre_logits(name, natural):
    timm = pytest.importorskip("timm")
    embedder = zoo_embedder(f"timm:{name}")
    with seeded_init():
        model = timm.create_model(name, pretrained=False).eval()
    side = model.pretrained_cfg["input_size"][-1]
    image = np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)
    config = model.pretrained_cfg
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(config["mean"]).view(1, 3, 1, 1)) / torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = F.normalize(model.forward_head(model.forward_features(x), pre_logits=True), dim=1)
    assert embedder.pooling == natural and embedder.dimension == model.num_features
    box = np.array([[0, 0, side, side]], dtype=np.float32)
    torch.testing.assert_close(embed(embedder, image, box), expected, atol=2e-5, rtol=0)


def test_timm_without_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(SettingsError, match=r"^timm:NAME needs timm: pip install 'retrieval\[timm\]'$"):
        zoo_embedder("timm:resnet18")


def test_timm_default_weights_offline_are_a_one_line_error(monkeypatch, tmp_path):
    pytest.importorskip("timm")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(WeightsError) as error:
        zoo_embedder("timm:resnet18", "default")
    message = str(error.value)
    assert message.startswith("could not get timm's pretrained weights of 'resnet18' (")
    assert f"downloaded into {tmp_path} once online" in message and "\n" not in message


def test_index_and_query_with_a_torchvision_model_through_the_cli(tmp_path):
    runner = CliRunner()
    help_text = " ".join(runner.invoke(main, ["index", "--help"]).output.split())
    assert "torchvision:NAME: any torchvision classification model's trunk" in help_text
    assert "timm:NAME: any timm model's features" in help_text
    index = tmp_path / "index"
    options = ["--embedder", "torchvision:resnet18", "--weights", "random", "--objects", "whole", "--quiet"]
    result = runner.invoke(main, ["index", str(GALLERY), "--index", str(index), *options])
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(main, ["info", "--index", str(index), "--json"]).output)
    assert info["objects"] == 40
    query = GALLERY / "scene_007.jpg"
    result = runner.invoke(main, ["query", str(query), "--index", str(index), "--top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)["results"][0]
    assert top["image"] == str(query) and top["score"] >= 0.999
