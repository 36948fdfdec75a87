"""Run a callback once a given module has been imported, now if it already has been.

Registering `vit_port` with transformers' Auto classes needs `transformers.models.auto`, and importing that package
scans the folder of every model transformers ships (over a second on a small machine). A program that imports
hf_vit_port and never touches an Auto class should not pay for it; one that does pays once, when transformers loads
the Auto module, and finds `vit_port` registered the moment the module exists.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType

Callback = Callable[[ModuleType], None]
_pending: dict[str, list[Callback]] = {}


def when_imported(module_name: str, callback: Callback) -> None:
    """Call `callback(module)` as soon as `module_name` has finished executing (immediately if it has)."""
    module = sys.modules.get(module_name)
    if module is not None and not getattr(module.__spec__, "_initializing", False):
        callback(module)
        return
    _pending.setdefault(module_name, []).append(callback)
    if not any(isinstance(finder, _Watcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Watcher())


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the finders behind it and wraps the loader they return."""

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name not in _pending:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1 :]:
            spec = getattr(finder, "find_spec", lambda *_: None)(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _CallbackLoader(spec.loader, name)
                return spec
        return None


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, name: str) -> None:
        self._loader, self._name = loader, name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader  # what the module would have had without us (inspect, pkgutil)
        self._loader.exec_module(module)
        for callback in _pending.pop(self._name, []):
            callback(module)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._loader, name)  # get_source, get_filename, is_package, ... for tools that ask
