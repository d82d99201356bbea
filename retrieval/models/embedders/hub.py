"""hub:REPO:MODEL: a torch.hub model (DINOv2's dinov2_vits14, …): its own output (the CLS token) or pooled patch tokens.

REPO is a GitHub ``OWNER/REPO``, optionally at a branch, tag or commit ``OWNER/REPO@REF``
(``hub:facebookresearch/dinov2@main:dinov2_vits14``), or the path of a local checkout, starting with ``/``,
``.`` or ``~`` (``hub:/src/dinov2:dinov2_vits14``); MODEL is an entrypoint of its hubconf.py. A repo in
torch.hub's cache (``$TORCH_HOME/hub/OWNER_REPO_REF``) is loaded from there without the network; naming a repo
trusts its hubconf.py (no prompt). ``--weights default`` is the entrypoint's own pretrained weights (from
``$TORCH_HOME/hub/checkpoints/`` once downloaded); a state_dict PATH or ``random`` build it with
``pretrained=False``. Each box is cropped as for every crop embedder (``--input-size``, a multiple of the
model's patch size, 224 by default; ``--crop pad`` keeps the aspect ratio; ``--margin``), normalised with the
ImageNet mean and std; ``--pooling auto``/``cls`` keeps the model's output, ``gap``/``gem``/``mac`` pools its
patch tokens (``models/backbones/hub.py``).
"""

from __future__ import annotations

from ..registry import CROP_AND_POOLING, EmbedderEntry


def _build(settings, device, detector):
    from ..backbones.hub import build_hub_trunk
    from ..crop_embedder import CropEmbedder, CropOptions

    options = CropOptions.of(settings)
    trunk = build_hub_trunk(settings.embedder, settings.weights, options)
    return CropEmbedder(trunk, options, device, settings.precision)


ENTRY = EmbedderEntry(
    build=_build,
    summary="a torch.hub model's output (DINOv2's CLS token) or pooled patch tokens",
    options=CROP_AND_POOLING,
    argument="REPO:MODEL",
)
