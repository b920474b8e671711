"""Environment variables set for a block and put back exactly afterwards (unset ones are unset again)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def overridden(values: dict[str, str | None] | None = None, keep: tuple[str, ...] = ()) -> Iterator[None]:
    """Set `values` (None: unset) for the block; `keep` names variables the block may change (MLflow's
    `set_tracking_uri` rewrites $MLFLOW_TRACKING_URI) that must be restored too."""
    values = values or {}
    names = set(values) | set(keep)
    saved = {k: os.environ.get(k) for k in names}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
