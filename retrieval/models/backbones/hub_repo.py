"""Where a ``hub:REPO:MODEL`` embedder's code comes from: the name parsed, the checkout found, its entrypoint.

Names (``NAME_FORMS``)::

    hub:OWNER/REPO:MODEL          GitHub repo, default branch (main, else master)
    hub:OWNER/REPO@REF:MODEL      GitHub repo at a branch, tag or commit (torch.hub's ``OWNER/REPO:REF``)
    hub:/path/to/checkout:MODEL   a local folder with a hubconf.py (a path starts with /, . or ~)

A GitHub repo is used from torch.hub's cache (``torch.hub.get_dir()/OWNER_REPO_REF``, the folder
``torch.hub``'s ``_get_cache_or_reload`` unpacks it to, ``/`` in REF as ``_``) when it is there, straight as a
local folder: torch.hub itself would first ask GitHub to validate the repo and fail offline (pytorch #91568).
Only a repo not in the cache is downloaded, by ``torch.hub.list`` (which fetches it and runs nothing but its
hubconf.py). Naming a repo in ``--embedder`` trusts it (``trust_repo=True``: its hubconf.py runs, and no
prompt can block a server or a script).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import torch

from ...errors import SettingsError, WeightsError

NAME_FORMS = "hub:OWNER/REPO:MODEL, hub:OWNER/REPO@REF:MODEL or hub:/path/to/checkout:MODEL"
DEFAULT_REFS = ("main", "master")  # what torch.hub tries when no ref is given
HUBCONF = "hubconf.py"
_GITHUB_REPO = re.compile(r"(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)(?:@(?P<ref>[\w./-]+))?")
_ENTRYPOINT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class HubName:
    """A parsed ``hub:`` embedder name.

    Attributes:
        repo: ``OWNER/REPO`` on GitHub, or the absolute path of a local checkout.
        ref: the GitHub branch, tag or commit asked for (``None``: the default branch; always ``None`` locally).
        model: the entrypoint, a function of the repo's hubconf.py.
        local: ``repo`` is a folder here.
    """

    repo: str
    ref: str | None
    model: str
    local: bool


def parse_hub_name(embedder: str) -> HubName:
    """``hub:REPO:MODEL`` (see ``NAME_FORMS``) → its parts; a malformed name is a ``SettingsError``."""
    repo, colon, model = embedder.partition(":")[2].rpartition(":")
    expected = f"--embedder {embedder!r}: expected {NAME_FORMS} (MODEL an entrypoint of the repo's {HUBCONF})"
    if not colon or not repo or not _ENTRYPOINT.fullmatch(model):
        raise SettingsError(expected)
    if repo.startswith(("/", ".", "~")):
        return HubName(str(Path(repo).expanduser().absolute()), None, model, True)
    match = _GITHUB_REPO.fullmatch(repo)
    if not match:
        raise SettingsError(f"{expected}; a local checkout's path starts with /, ./ or ~")
    return HubName(f"{match['owner']}/{match['name']}", match["ref"], model, False)


def checkout(name: HubName) -> tuple[Path, str | None]:
    """``(folder with hubconf.py, ref)`` of ``name``: the local folder (ref: its git commit, if it is a git
    checkout), else the cached checkout of the ref, downloaded first when the cache lacks it."""
    if name.local:
        folder = Path(name.repo)
        if not (folder / HUBCONF).is_file():
            raise WeightsError(
                f"{folder} has no {HUBCONF}: hub:PATH:MODEL needs a checkout of a torch.hub repo "
                f"(a folder with {HUBCONF})"
            )
        return folder, git_commit(folder)
    found = cached_checkout(name)
    if found is None:
        download_checkout(name)
        found = cached_checkout(name)
    if found is None:
        raise WeightsError(f"torch.hub did not leave {name.repo} in its cache {torch.hub.get_dir()}")
    if not (found[0] / HUBCONF).is_file():
        raise WeightsError(f"cached checkout {found[0]} has no {HUBCONF}: delete that folder to download it again")
    return found


def cached_checkout(name: HubName) -> tuple[Path, str] | None:
    """``(folder, ref)`` of ``name``'s checkout in torch.hub's cache, or ``None``; never touches the network."""
    owner, repo = name.repo.split("/")
    for ref in (name.ref,) if name.ref else DEFAULT_REFS:
        folder = Path(torch.hub.get_dir()) / f"{owner}_{repo}_{ref.replace('/', '_')}"
        if folder.is_dir():
            return folder, ref
    return None


def download_checkout(name: HubName) -> None:
    """Download ``name``'s repo into torch.hub's cache; a failure is a ``WeightsError`` saying where a copy goes."""
    owner, repo = name.repo.split("/")
    github = f"{name.repo}:{name.ref}" if name.ref else name.repo
    try:
        torch.hub.list(github, trust_repo=True, verbose=False)
    except ImportError:
        pass  # downloaded, but its hubconf.py imports a missing package: entrypoint() says which, in one line
    except (OSError, RuntimeError, ValueError) as error:  # URLError, HTTPError; offline; a ref not in the repo
        reason = getattr(error, "reason", None) or error
        folder = Path(torch.hub.get_dir()) / f"{owner}_{repo}_{(name.ref or 'main').replace('/', '_')}"
        raise WeightsError(
            f"could not download the torch.hub repo {github} ({reason}); offline, put its checkout in {folder}, "
            f"or use hub:/path/to/checkout:{name.model}"
        ) from None


def git_commit(folder: Path) -> str | None:
    """The commit checked out in ``folder`` when it is a git checkout's top (has ``.git``), else ``None``."""
    if not (folder / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:  # no git here
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@contextlib.contextmanager
def on_sys_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` inside the block, as torch.hub does for a hubconf.py and its calls."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def entrypoint(folder: Path, name: HubName, label: str) -> Callable:
    """The entrypoint ``name.model`` of ``folder``'s hubconf.py (imported with ``folder`` on ``sys.path``).

    A missing package is a ``WeightsError`` naming it; an unknown entrypoint a ``SettingsError`` listing them.
    """
    with on_sys_path(folder):
        module = _import_hubconf(folder / HUBCONF)
    missing = [package for package in getattr(module, "dependencies", []) if importlib.util.find_spec(package) is None]
    if missing:
        raise WeightsError(f"{folder / HUBCONF} needs {', '.join(missing)}: pip install {' '.join(missing)}")
    found = getattr(module, name.model, None)
    if name.model.startswith("_") or not callable(found):
        known = sorted(key for key, value in vars(module).items() if callable(value) and not key.startswith("_"))
        raise SettingsError(
            f"--embedder {label}: {folder / HUBCONF} has no entrypoint {name.model!r}; "
            f"use one of {', '.join(known) or '(none)'}"
        )
    return found


def _import_hubconf(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("hubconf", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise WeightsError(f"{path} imports a package that is not installed ({error}): install it") from None
    return module
