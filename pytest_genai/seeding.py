"""Seeds: one per case, derived from (global seed, case id), so order, -k and -n do not matter."""

from __future__ import annotations

import hashlib
import random
import sys


def case_seed(global_seed: int, case_id: str) -> int:
    digest = hashlib.sha256(f"{global_seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def apply_seed(seed: int) -> None:
    """Seed random, and numpy/torch/transformers only if the pipeline already imported them (stay light)."""
    if "transformers" in sys.modules:
        from transformers import set_seed

        set_seed(seed)  # random, numpy and torch (CUDA included) in one call
        return
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
