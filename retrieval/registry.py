"""A registry of named parts: the one mechanism behind the three doors (embedders, vector stores, gallery sources).

A registry knows two kinds of entries:

- **built-in** ones: every public module of one package (``retrieval.models.embedders``, ...) is the entry
  named after it and defines ``ENTRY``. Adding one is adding a module there; nothing else changes. Modules
  are imported only when their entry is used, so listing names never imports torch or FAISS.
- **registered** ones: ``registry.register(name, entry)`` from any code (a plugin, a test) adds or replaces
  an entry at run time.

An entry may be a *family* taking an argument after a colon (``torchvision:resnet101``,
``hub:facebookresearch/dinov2:dinov2_vits14``): the entry of ``torchvision`` has a non-empty ``argument``
attribute (what the argument is, for help: ``NAME``), and ``get("torchvision:resnet101")`` returns it; the
entry reads the argument from the full name it is built with. A built-in family module's docstring starts with
``name:ARGUMENT: ...``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
from typing import Generic, TypeVar

from .errors import SettingsError

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Entries of one kind, keyed by name."""

    def __init__(self, kind: str, package: str) -> None:
        """``kind`` names the entries in messages ("embedder"); ``package`` holds the built-in entry modules."""
        self.kind = kind
        self.package = package
        self._registered: dict[str, Entry] = {}
        self._found: tuple[str, ...] | None = None  # the built-in modules, listed once

    def register(self, name: str, entry: Entry) -> Entry:
        """Add ``entry`` under ``name`` (replacing a registered or built-in one of that name); returns it."""
        if not name or not name.replace("-", "_").isidentifier():
            raise SettingsError(f"{self.kind} name {name!r} must be a word (letters, digits, _ or -)")
        self._registered[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove a registered entry (built-in ones stay)."""
        self._registered.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every entry's name, built-in ones first, in alphabetical order within each group."""
        built_in = self._built_in()
        return (*built_in, *sorted(name for name in self._registered if name not in built_in))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        base = name.split(":", 1)[0]
        return base in self._registered or base in self._built_in()

    def get(self, name: str) -> Entry:
        """The entry named ``name`` (a family's for ``family:ARGUMENT``); an unknown name, a family without
        its argument or an argument to a plain entry is a ``SettingsError`` saying what to use."""
        base, colon, argument = str(name).partition(":")
        if base in self._registered:
            entry = self._registered[base]
        elif base in self._built_in():
            entry = importlib.import_module(f"{self.package}.{base}").ENTRY
        else:
            raise SettingsError(f"unknown {self.kind} {name!r}: use one of {', '.join(self.labels())}")
        takes = getattr(entry, "argument", "")
        if takes and not argument.strip():
            raise SettingsError(f"{self.kind} {base!r} needs its {takes}: {base}:{takes}")
        if colon and not takes:
            raise SettingsError(f"{self.kind} {base!r} takes no ':' argument: use {base}")
        return entry

    def label(self, name: str) -> str:
        """How help shows an entry: its name, or ``name:ARGUMENT`` for a family."""
        if name in self._registered:
            takes = getattr(self._registered[name], "argument", "")
            return f"{name}:{takes}" if takes else name
        match = re.match(rf"{re.escape(name)}:(\S+?):\s", self._docstring(name))
        return f"{name}:{match.group(1)}" if match else name

    def labels(self) -> tuple[str, ...]:
        """``label`` of every entry, in ``names`` order."""
        return tuple(self.label(name) for name in self.names())

    def summary(self, name: str) -> str:
        """One line describing an entry: its ``summary``, or a built-in module's docstring's first line."""
        if name in self._registered:
            return str(getattr(self._registered[name], "summary", ""))
        first = self._docstring(name).split("\n\n")[0].replace("\n", " ").strip()
        return first.removeprefix(f"{self.label(name)}: ").rstrip(".")

    def _docstring(self, name: str) -> str:
        """A built-in entry module's docstring, read without importing it."""
        spec = importlib.util.find_spec(f"{self.package}.{name}")
        with open(spec.origin, encoding="utf-8") as handle:
            return ast.get_docstring(ast.parse(handle.read())) or ""

    def _built_in(self) -> tuple[str, ...]:
        if self._found is None:
            spec = importlib.util.find_spec(self.package)
            found = pkgutil.iter_modules(spec.submodule_search_locations)
            self._found = tuple(sorted(module.name for module in found if not module.name.startswith("_")))
        return self._found
