"""A registry of named parts: the one mechanism behind the three doors (embedders, vector stores, gallery sources).

A registry knows two kinds of entries:

- **built-in** ones: every public module of one package (``retrieval.models.embedders``, ...) is the entry
  named after it and defines ``ENTRY``. Adding one is adding a module there; nothing else changes. Modules
  are imported only when their entry is used, so listing names never imports torch or FAISS.
- **registered** ones: ``registry.register(name, entry)`` from any code (a plugin, a test) adds or replaces
  an entry at run time.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
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
        return name in self._registered or name in self._built_in()

    def get(self, name: str) -> Entry:
        """The entry named ``name``; an unknown name is a ``SettingsError`` listing the known ones."""
        if name in self._registered:
            return self._registered[name]
        if name in self._built_in():
            return importlib.import_module(f"{self.package}.{name}").ENTRY
        raise SettingsError(f"unknown {self.kind} {name!r}: use one of {', '.join(self.names())}")

    def summary(self, name: str) -> str:
        """One line describing an entry: its ``summary``, or a built-in module's docstring's first line."""
        if name in self._registered:
            return str(getattr(self._registered[name], "summary", ""))
        spec = importlib.util.find_spec(f"{self.package}.{name}")
        with open(spec.origin, encoding="utf-8") as handle:
            docstring = ast.get_docstring(ast.parse(handle.read())) or ""
        return docstring.split("\n\n")[0].replace("\n", " ").strip().removeprefix(f"{name}: ").rstrip(".")

    def _built_in(self) -> tuple[str, ...]:
        if self._found is None:
            spec = importlib.util.find_spec(self.package)
            found = pkgutil.iter_modules(spec.submodule_search_locations)
            self._found = tuple(sorted(module.name for module in found if not module.name.startswith("_")))
        return self._found
