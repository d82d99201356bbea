"""The second round of CPU fast paths, each against the plain path it replaces: the FPN's in-place top-down
sum (accel/fpn.py), the box head reading channels-last ROI features (accel/box_head.py), the partial sort of
the detection candidates (postprocess.best_first), and freed memory kept between forwards (accel/memory.py).
"""

from __future__ import annotations

import copy
import platform
import subprocess
import sys

import pytest
import torch
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from retrieval.models.accel.box_head import ChannelsLastBoxHead
from retrieval.models.accel.fpn import InPlaceTopDownFPN, add_upsampled
from retrieval.models.detectors.postprocess import best_first
from retrieval.models.weights import seeded_init


def pyramid(sizes: list[tuple[int, int]], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    channels = [8, 16, 32, 64]
    return {
        str(i): torch.randn(1, c, h, w, generator=generator).to(dtype).contiguous(memory_format=torch.channels_last)
        for i, (c, (h, w)) in enumerate(zip(channels, sizes))
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "sizes",
    [[(40, 56), (20, 28), (10, 14), (5, 7)], [(41, 57), (21, 29), (11, 15), (6, 8)]],
    ids=["padded to 32", "odd sizes"],
)
def test_in_place_top_down_fpn_equals_torchvisions(sizes, dtype):
    with seeded_init():
        plain = FeaturePyramidNetwork([8, 16, 32, 64], 16, extra_blocks=LastLevelMaxPool()).eval()
    plain = plain.to(dtype).to(memory_format=torch.channels_last)
    fast = InPlaceTopDownFPN(copy.deepcopy(plain))
    features = pyramid(sizes, dtype)
    with torch.inference_mode():
        expected, got = plain(features), fast(features)
    assert list(got) == list(expected) == ["0", "1", "2", "3", "pool"]
    assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_add_upsampled_adds_in_place_only_for_an_exact_double():
    top = torch.randn(1, 4, 3, 5).contiguous(memory_format=torch.channels_last)
    double = torch.randn(1, 4, 6, 10).contiguous(memory_format=torch.channels_last)
    expected = double + torch.nn.functional.interpolate(top, size=(6, 10), mode="nearest")
    result = add_upsampled(double, top)
    assert result is double and torch.equal(result, expected)
    other = torch.randn(1, 4, 7, 10).contiguous(memory_format=torch.channels_last)
    kept = other.clone()
    result = add_upsampled(other, top)
    assert result is not other and torch.equal(other, kept)
    assert torch.equal(result, kept + torch.nn.functional.interpolate(top, size=(7, 10), mode="nearest"))


def test_channels_last_box_head_gives_the_plain_heads_features():
    with seeded_init():
        plain = TwoMLPHead(32 * 7 * 7, 64).eval()
    fast = ChannelsLastBoxHead(copy.deepcopy(plain), 32)
    pooled = torch.randn(50, 32, 7, 7).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = plain(pooled), fast(pooled)
    assert got.shape == (50, 64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert fast(pooled.contiguous()).allclose(expected, rtol=1e-5, atol=1e-5)  # any layout


@pytest.mark.parametrize("count", [1, 7, 80, 999, 1000, 5000])
def test_best_first_is_the_head_of_a_stable_descending_sort(count):
    generator = torch.Generator().manual_seed(count)
    scores = torch.rand(1000, generator=generator)
    scores[::7] = 0.5  # many ties, where only a stable sort fixes the order
    scores[3::11] = scores.max()
    expected = scores.argsort(descending=True, stable=True)[:count]
    assert torch.equal(best_first(scores, count), expected)


REUSE_PROBE = """
import ctypes, resource, sys
from retrieval.models.accel.memory import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.memset.argtypes, libc.free.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t], [ctypes.c_void_p]
faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(24 << 20)
    libc.memset(block, 1, 24 << 20)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults[1])
"""


def faults_of_a_second_24_mib_block(mode: str) -> int:
    """Page faults taken writing a 24 MiB block (an activation's size) malloc'd after one like it was freed."""
    done = subprocess.run([sys.executable, "-c", REUSE_PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="keep_freed_memory sets glibc's thresholds only")
def test_freed_memory_is_reused_instead_of_taken_fresh_from_the_kernel():
    """glibc's default hands the first freed block back and grows its heap for the second (6,144 fresh 4 KiB
    pages); with freed memory kept, the second block reuses the first's pages."""
    assert faults_of_a_second_24_mib_block("plain") > 5_000
    assert faults_of_a_second_24_mib_block("kept") < 200
