"""The hub:REPO:MODEL embedder on small torch.hub repos written here: a local checkout, a cached checkout
loaded with the network cut off, the weights choices, the outputs against the model's own, and the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from retrieval.cli.main import main
from retrieval.errors import SettingsError, WeightsError
from retrieval.models.registry import build_embedder
from retrieval.models.weights import file_sha256
from retrieval.settings import IndexSettings
from retrieval.testing.demo_data import generate

HUBCONF = textwrap.dedent(
    '''
    """A tiny torch.hub repo: a ViT-like model with patch 14 and a small CNN."""
    import torch
    from torch import nn

    dependencies = ["torch"]
    URL = "https://weights.example.invalid/tiny_vit-0123.pth"


    class TinyViT(nn.Module):
        """DINOv2's interface: forward is the normalised CLS token; forward_features a dict of tokens."""

        def __init__(self, dim=8):
            super().__init__()
            self.patch_size = 14
            self.patch_embed = nn.Conv2d(3, dim, 14, 14)
            self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
            self.norm = nn.LayerNorm(dim)

        def forward_features(self, x):
            assert x.shape[-1] % 14 == 0 and x.shape[-2] % 14 == 0, "sides must be multiples of 14"
            patches = self.patch_embed(x).flatten(2).transpose(1, 2)
            cls = self.cls_token + patches.mean(dim=1, keepdim=True)
            tokens = self.norm(torch.cat([cls, patches], dim=1))
            return {"x_norm_clstoken": tokens[:, 0], "x_norm_patchtokens": tokens[:, 1:]}

        def forward(self, x):
            return self.forward_features(x)["x_norm_clstoken"]


    def tiny_vit(*, pretrained=True, dim=8):
        """Downloads its weights unless pretrained=False, as DINOv2's entrypoints do."""
        model = TinyViT(dim)
        if pretrained:
            model.load_state_dict(torch.hub.load_state_dict_from_url(URL, map_location="cpu"))
        return model


    def tiny_cnn(pretrained=False):
        """A (B, 6, h, w) feature map."""
        return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU())


    def _private():
        return nn.Identity()
    '''
)
CLI_QUERY = "scene_003.jpg"


def write_repo(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hubconf.py").write_text(HUBCONF)
    return folder


@pytest.fixture
def repo(tmp_path):
    return write_repo(tmp_path / "tiny_repo")


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache for this test (``$TORCH_HOME``; torch.hub's own ``set_dir`` is not used)."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def no_network(monkeypatch):
    """Every connection or name look-up fails, and is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network cut off by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def embedder(name, weights="random", **options):
    settings = IndexSettings(embedder=name, objects="whole", weights=str(weights), precision="fp32", **options)
    return build_embedder(settings, torch.device("cpu"))


def own_model(repo, entry="tiny_vit"):
    """The entrypoint's model as torch.hub builds it, with pretrained=False and the same seed (0)."""
    torch.manual_seed(0)
    return torch.hub.load(str(repo), entry, source="local", pretrained=False).eval()


def normalised_crop(image):
    """``(H, W, 3)`` uint8 with sides already the model's input → ``(1, 3, H, W)`` ImageNet-normalised."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((torch.from_numpy(image).float() / 255 - mean) / std).permute(2, 0, 1)[None]


def test_a_local_checkout_gives_the_model_s_own_cls_output_normalised(repo, no_network):
    model = embedder(f"hub:{repo}:tiny_vit")
    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    [vector] = model.embed([image], [np.array([[0, 0, 224, 224]], dtype=np.float32)])
    with torch.no_grad():
        expected = F.normalize(own_model(repo)(normalised_crop(image)), dim=1).numpy()
    assert vector.shape == (1, 8) and model.dimension == 8
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    assert no_network == []


def test_patch_pooling_is_the_mean_of_the_patch_tokens(repo):
    model = embedder(f"hub:{repo}:tiny_vit", pooling="gap")
    image = np.random.default_rng(2).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    [vector] = model.embed([image], [np.array([[0, 0, 224, 224]], dtype=np.float32)])
    with torch.no_grad():
        patches = own_model(repo).forward_features(normalised_crop(image))["x_norm_patchtokens"][0].numpy()
    assert patches.shape == (256, 8)  # 16 x 16 patches of 14 pixels
    mean = patches.mean(axis=0)
    np.testing.assert_allclose(vector[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert not np.allclose(vector, embedder(f"hub:{repo}:tiny_vit").embed([image], [np.array([[0, 0, 224, 224]])])[0])


def test_a_cnn_entrypoint_gives_a_pooled_feature_map(repo):
    model = embedder(f"hub:{repo}:tiny_cnn", pooling="mac")
    image = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    [vector] = model.embed([image], [np.array([[0, 0, 224, 224]], dtype=np.float32)])
    with torch.no_grad():
        features = own_model(repo, "tiny_cnn")(normalised_crop(image))
    expected = F.normalize(features.amax(dim=(2, 3)), dim=1).numpy()
    assert model.dimension == 6
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    with pytest.raises(SettingsError, match="--pooling cls needs a transformer's CLS token"):
        embedder(f"hub:{repo}:tiny_cnn", pooling="cls")


def test_random_weights_never_download_and_are_seeded(repo, torch_home, no_network):
    first, second = embedder(f"hub:{repo}:tiny_vit"), embedder(f"hub:{repo}:tiny_vit")
    assert first.identity == second.identity and first.identity["source"] == "random"
    image = np.random.default_rng(4).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    boxes = [np.array([[10, 20, 150, 260]], dtype=np.float32)]
    np.testing.assert_array_equal(first.embed([image], boxes)[0], second.embed([image], boxes)[0])
    assert no_network == [] and not (torch_home / "hub" / "checkpoints").exists()


def test_a_weights_file_is_loaded_into_the_model_built_without_its_download(repo, tmp_path, no_network):
    generator = torch.Generator().manual_seed(7)
    state = {key: torch.randn(value.shape, generator=generator) for key, value in own_model(repo).state_dict().items()}
    path = tmp_path / "tiny_vit.pth"
    torch.save(state, path)
    model = embedder(f"hub:{repo}:tiny_vit", weights=path)
    assert model.identity["source"] == "file" and model.identity["sha256"] == file_sha256(path)
    random_model = embedder(f"hub:{repo}:tiny_vit")
    assert model.identity["state_sha256"] != random_model.identity["state_sha256"]
    reference = own_model(repo)
    reference.load_state_dict(state)
    image = np.random.default_rng(5).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = F.normalize(reference(normalised_crop(image)), dim=1).numpy()
    np.testing.assert_allclose(model.embed([image], [np.array([[0, 0, 224, 224]])])[0], expected, atol=1e-5)
    assert no_network == []


def test_default_weights_come_from_the_torch_cache_offline_or_fail_in_one_line(repo, torch_home, no_network):
    checkpoints = torch_home / "hub" / "checkpoints"
    with pytest.raises(WeightsError) as failure:
        embedder(f"hub:{repo}:tiny_vit", weights="default")
    assert str(failure.value) == (
        f"hub:{repo}:tiny_vit: could not download its weights tiny_vit-0123.pth (network cut off by the test); "
        f"put that file (from https://weights.example.invalid/tiny_vit-0123.pth) in {checkpoints}/, "
        "or pass --weights PATH (a state_dict file), or random for a smoke run"
    )
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(own_model(repo).state_dict(), checkpoints / "tiny_vit-0123.pth")
    model = embedder(f"hub:{repo}:tiny_vit", weights="default")
    assert model.identity["source"] == "default" and model.identity["name"] == f"hub:{repo}:tiny_vit"
    assert model.identity["state_sha256"] == embedder(f"hub:{repo}:tiny_vit").identity["state_sha256"]


def test_a_cached_github_checkout_loads_by_name_without_the_network(tmp_path, torch_home, no_network):
    write_repo(torch_home / "hub" / "someone_tiny-models_main")
    model = embedder("hub:someone/tiny-models:tiny_vit")
    assert model.dimension == 8 and no_network == []
    assert model.identity["repo"] == "someone/tiny-models" and model.identity["ref"] == "main"
    write_repo(torch_home / "hub" / "someone_tiny-models_release_v2")
    tagged = embedder("hub:someone/tiny-models@release/v2:tiny_vit")
    assert tagged.identity["ref"] == "release/v2" and no_network == []


def test_a_github_repo_neither_cached_nor_reachable_is_one_line(torch_home, no_network):
    with pytest.raises(WeightsError) as failure:
        embedder("hub:someone/absent:tiny_vit")
    message = str(failure.value)
    assert message.startswith("could not download the torch.hub repo someone/absent (")
    assert message.endswith(
        f"offline, put its checkout in {torch_home / 'hub' / 'someone_absent_main'}, "
        "or use hub:/path/to/checkout:tiny_vit"
    )
    assert "\n" not in message


def test_identity_names_repo_commit_hubconf_model_and_tensors(repo):
    identity = embedder(f"hub:{repo}:tiny_vit").identity
    assert identity["repo"] == str(repo) and identity["ref"] is None and identity["model"] == "tiny_vit"
    assert identity["hubconf_sha256"] == file_sha256(repo / "hubconf.py")
    assert identity["seed"] == 0 and len(identity["state_sha256"]) == 64
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "hubconf.py"], check=True)
    subprocess.run([*git, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert embedder(f"hub:{repo}:tiny_vit").identity["ref"] == commit


@pytest.mark.parametrize(
    "name, message",
    [
        ("hub:facebookresearch/dinov2", "expected hub:OWNER/REPO:MODEL, hub:OWNER/REPO@REF:MODEL or hub:/path"),
        ("hub:dinov2:dinov2_vits14", "a local checkout's path starts with /, ./ or ~"),
        ("hub:a/b:not-a-name", "expected hub:OWNER/REPO:MODEL"),
    ],
)
def test_malformed_names_are_refused_in_one_line(name, message):
    with pytest.raises(SettingsError, match=message):
        embedder(name)


def test_a_folder_without_hubconf_or_entrypoint_is_refused(repo, tmp_path):
    with pytest.raises(WeightsError, match=f"{tmp_path} has no hubconf.py: hub:PATH:MODEL needs a checkout"):
        embedder(f"hub:{tmp_path}:tiny_vit")
    with pytest.raises(SettingsError, match=r"has no entrypoint 'vit_huge'; use one of TinyViT, tiny_cnn, tiny_vit"):
        embedder(f"hub:{repo}:vit_huge")
    (repo / "hubconf.py").write_text('dependencies = ["no_such_package_here"]\n')
    with pytest.raises(WeightsError, match="needs no_such_package_here: pip install no_such_package_here"):
        embedder(f"hub:{repo}:tiny_vit")


def test_an_input_size_that_is_not_a_multiple_of_the_patch_is_refused(repo):
    with pytest.raises(
        SettingsError, match="--input-size 200 is not a multiple of the model's patch size 14: use 196 or 210"
    ):
        embedder(f"hub:{repo}:tiny_vit", input_size=200)
    assert embedder(f"hub:{repo}:tiny_vit", input_size=112, crop="pad").embed(
        [np.zeros((50, 90, 3), dtype=np.uint8)], [np.array([[0, 0, 90, 50]])]
    )[0].shape == (1, 8)


def test_index_and_query_through_the_cli(repo, tmp_path):
    generate(tmp_path / "demo")
    gallery, index = tmp_path / "demo" / "gallery", tmp_path / "index"
    runner = CliRunner()
    built = runner.invoke(
        main,
        ["index", str(gallery), "--index", str(index), "--embedder", f"hub:{repo}:tiny_vit",
         "--weights", "random", "--objects", "whole", "--precision", "fp32", "--quiet"],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    info = json.loads(runner.invoke(main, ["info", "--index", str(index), "--json"]).output)
    assert info["objects"] == 40 and info["dimension"] == 8
    assert info["manifest"]["embedder"]["weights"]["repo"] == str(repo)
    found = runner.invoke(main, ["query", str(gallery / CLI_QUERY), "--index", str(index), "--json", "--top-k", "3"])
    assert found.exit_code == 0, found.output
    results = json.loads(found.output)["results"]
    assert results[0]["image"].endswith(CLI_QUERY) and results[0]["score"] == pytest.approx(1.0, abs=1e-4)
