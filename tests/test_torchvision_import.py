"""torchvision imported without TorchDynamo (retrieval/torchvision_import.py): the stand-in is lent only to
torchvision.ops.roi_align, taken back afterwards, and TorchDynamo still imports, whole, when asked for."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys

from retrieval import torchvision_import


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_detector_module_imports_without_torchdynamo():
    out = run(
        "import sys, retrieval\n"
        "import retrieval.models.detectors.faster_rcnn\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')), 'torchvision' in sys.modules)\n"
    )
    assert out == "[] True"


def test_torchdynamo_imports_whole_afterwards_and_roi_align_gets_the_real_answer():
    out = run(
        "import sys, retrieval, torchvision, torch\n"
        "roi_align = sys.modules['torchvision.ops.roi_align']\n"
        "assert roi_align.is_compile_supported.__module__ == 'retrieval.torchvision_import'\n"
        "import torch._dynamo\n"
        "assert not hasattr(torch._dynamo, '__retrieval_stand_in__') and callable(torch._dynamo.optimize)\n"
        "real = torch._dynamo.utils.is_compile_supported\n"
        "print(roi_align.is_compile_supported('cpu') == real('cpu'), torch.compile(lambda x: x + 1)(torch.ones(1)))\n"
    )
    assert out == "True tensor([2.])"


def test_the_hook_is_gone_once_it_has_acted():
    out = run(
        "import sys, retrieval\n"
        "from retrieval.torchvision_import import _RoiAlignFinder\n"
        "before = sum(isinstance(f, _RoiAlignFinder) for f in sys.meta_path)\n"
        "import torchvision\n"
        "print(before, sum(isinstance(f, _RoiAlignFinder) for f in sys.meta_path), 'torch._dynamo' in sys.modules)\n"
    )
    assert out == "1 0 False"


def test_roi_align_gives_what_torchvision_gives():
    """The module imported with the stand-in is torchvision's own roi_align, numbers and all."""
    out = run(
        "import retrieval, torch\n"
        "from torchvision.ops import roi_align\n"
        "x = torch.arange(32.0).reshape(1, 2, 4, 4)\n"
        "print(roi_align(x, [torch.tensor([[0.0, 0.0, 3.0, 3.0]])], 1).flatten().tolist())\n"
    )
    assert out == "[7.5, 23.5]"


def test_another_module_source_is_left_to_the_usual_import(tmp_path):
    """A roi_align whose source names TorchDynamo elsewhere (a newer torchvision) gets no stand-in."""
    module = tmp_path / "roi_align.py"
    module.write_text(torchvision_import.KNOWN_IMPORT + "\nimport torch._dynamo.config\n")
    spec = importlib.machinery.PathFinder.find_spec("roi_align", [str(tmp_path)])
    assert not torchvision_import._only_known_import(spec)
    module.write_text(torchvision_import.KNOWN_IMPORT + "\n")
    assert torchvision_import._only_known_import(importlib.machinery.PathFinder.find_spec("roi_align", [str(tmp_path)]))
