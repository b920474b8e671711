"""Seeds: one per case, derived from (global seed, case id), so order, -k and -n do not matter.

Before each case (run one at a time) the process-wide RNGs are seeded with the case's seed: `random`
always, numpy and torch if imported. A library first imported *inside* a case is seeded with that
case's seed the moment its import finishes (an import hook), so a `-k` subset whose first case imports
torch draws what the full run draws. The seed of the running case is also `current_case_seed()`
(per thread: a pool's cases each see their own)."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import random
import sys
import threading
from typing import Any, Sequence

_SEEDED_ON_IMPORT = ("numpy", "torch")
_local = threading.local()
_process_seed: int | None = None  # the case being run one at a time (None under a pool)


def case_seed(global_seed: int, case_id: str) -> int:
    digest = hashlib.sha256(f"{global_seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def current_case_seed() -> int | None:
    """The seed of the case this thread is running, for pipelines that keep their own RNG."""
    return getattr(_local, "seed", None)


def set_thread_seed(seed: int | None) -> None:
    _local.seed = seed


def apply_seed(seed: int) -> None:
    """Seed random, and numpy/torch if already imported (stay light); later imports are seeded by the hook."""
    global _process_seed
    _process_seed = seed
    _local.seed = seed
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None and hasattr(np, "random"):
        np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        torch.manual_seed(seed)


def release_process_seed() -> None:
    """After a case: an import between cases (a fixture, the next case's setup) is not that case's."""
    global _process_seed
    _process_seed = None


def _seed_module(name: str, module: Any, seed: int) -> None:
    if name == "numpy":
        module.random.seed(seed)
    elif name == "torch":
        module.manual_seed(seed)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, name: str) -> None:
        self.inner, self.name = inner, name

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        seed = _process_seed
        if seed is not None:
            _seed_module(self.name, module, seed)

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package ...
        return getattr(self.inner, attr)


class SeedOnImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of numpy/torch so the running case's seed applies once the import completes."""

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if name not in _SEEDED_ON_IMPORT or name in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, name)
        return spec


def install_import_hook() -> None:
    if not any(isinstance(f, SeedOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, SeedOnImport())
