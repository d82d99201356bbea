"""Import torchvision without importing TorchDynamo, the largest part of a command's start-up after torch.

``torchvision.ops.roi_align`` runs ``from torch._dynamo.utils import is_compile_supported`` when it is
imported (and ``import torchvision`` imports it), which imports all of TorchDynamo (``torch._dynamo``,
sympy, the FX tracer, …): about 2.2 s on a 2-core machine, ten times the rest of torchvision, for a function
roi_align calls only on a fallback path (no compiled torchvision ops, or deterministic mode on a GPU).

``install()`` (run by ``import retrieval``; it imports nothing) adds an import hook that acts once, when
``torchvision.ops.roi_align`` is first imported: while that one module runs, ``torch._dynamo.utils`` is a
stand-in whose ``is_compile_supported`` imports the real one on its first call; then the stand-in is
taken back, and ``torch._dynamo`` imports as usual the first time anything asks for it (``torch.compile``).
The stand-in is lent only when the module's source names TorchDynamo in that one import and nowhere else,
so another torchvision imports the usual way. Where TorchDynamo is already imported the hook does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

DYNAMO = "torch._dynamo"
DYNAMO_UTILS = "torch._dynamo.utils"
HOOKED = "torchvision.ops.roi_align"
KNOWN_IMPORT = "from torch._dynamo.utils import is_compile_supported"


def is_compile_supported(device_type: str) -> bool:
    """TorchDynamo's ``is_compile_supported``, imported on first call."""
    from torch._dynamo.utils import is_compile_supported as real

    return real(device_type)


def install() -> None:
    """Add the hook to ``sys.meta_path`` (once); it acts at the first import of ``torchvision.ops.roi_align``."""
    if HOOKED in sys.modules or any(isinstance(finder, _RoiAlignFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _RoiAlignFinder())


class _RoiAlignFinder(importlib.abc.MetaPathFinder):
    """Finds ``torchvision.ops.roi_align`` as the path finder does, with a loader that lends the stand-in
    while it runs; removes itself at that first call."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != HOOKED:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and DYNAMO not in sys.modules and _only_known_import(spec):
            spec.loader = _LendingLoader(spec.loader)
        return spec


def _only_known_import(spec: importlib.machinery.ModuleSpec) -> bool:
    """True when the module's source mentions TorchDynamo once, in ``KNOWN_IMPORT``."""
    try:
        source = spec.loader.get_source(spec.name)
    except (AttributeError, ImportError, OSError):
        return False
    return bool(source) and source.count("_dynamo") == 1 and source.count(KNOWN_IMPORT) == 1


class _LendingLoader(importlib.abc.Loader):
    """Runs the module's own loader with the stand-in lent; everything else is the wrapped loader's."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        import torch  # noqa: F401  (torch itself imports before the stand-in exists)

        package = _lend()
        try:
            self._loader.exec_module(module)
        finally:
            _take_back(package)


def _lend() -> types.ModuleType:
    """Put a stand-in ``torch._dynamo`` package and its ``utils`` into ``sys.modules``; returns the package."""
    package = types.ModuleType(DYNAMO, "stand-in lent while torchvision.ops.roi_align imports")
    package.__path__ = []
    utils = types.ModuleType(DYNAMO_UTILS)
    utils.is_compile_supported = is_compile_supported
    package.utils = utils
    sys.modules[DYNAMO], sys.modules[DYNAMO_UTILS] = package, utils
    return package


def _take_back(package: types.ModuleType) -> None:
    """Remove the stand-in from ``sys.modules`` and from the ``torch`` module."""
    if sys.modules.get(DYNAMO) is package:
        del sys.modules[DYNAMO]
        sys.modules.pop(DYNAMO_UTILS, None)
    torch = sys.modules.get("torch")
    if torch is not None and torch.__dict__.get("_dynamo") is package:
        del torch._dynamo
