"""Write requirements.lock: every distribution installed in the venv (but this project), pinned, with sha256 hashes.

Run by `make lock`. The pins are exactly `pip freeze --all --exclude-editable` of the venv; `uv pip compile
--no-deps --generate-hashes` adds the hashes of every file the index has for each pinned version (the sdist and the
wheels of all platforms, so the lock installs off this machine too). A pin with a local version (`+cpu`), which
PyPI never serves, is downloaded with pip (local wheel folder, else the PyTorch CPU index) and hashed here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = (
    "# Complete lock of the dev/CI env (Python 3.11, CPU). Install with: pip install --no-deps --require-hashes -r requirements.lock\n"
    "# Regenerate with: make lock\n"
    "# torch's +cpu build is not on PyPI: it comes from a local wheel folder (PIP_FIND_LINKS) or the PyTorch CPU index\n"
    "# (`make setup` falls back to that index for torch alone).\n"
)
PROJECT = "pytest-genai"
TORCH_INDEX = os.environ.get("TORCH_INDEX", "https://download.pytorch.org/whl/cpu")  # as in scripts/install_lock.sh


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def run(cmd: list[str], **kw: object) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if out.returncode != 0:
        raise SystemExit(f"lock: {' '.join(cmd[:4])} ... failed ({out.returncode}):\n{out.stderr.strip()}")
    return out.stdout


def frozen_pins(python: str) -> list[tuple[str, str]]:
    """(name as pip spells it, version) for every installed distribution but the project."""
    pins = []
    for line in run([python, "-m", "pip", "freeze", "--all", "--exclude-editable"]).splitlines():
        name, sep, version = line.strip().partition("==")
        if not sep:
            raise SystemExit(f"lock: pip freeze gave a line that is not name==version: {line!r}")
        if normalize(name) != PROJECT:
            pins.append((name, version))
    return pins


def parse_hashes(text: str) -> dict[str, list[str]]:
    """normalised name -> sha256 hex digests from a `--generate-hashes` requirements file."""
    out: dict[str, list[str]] = {}
    for logical in text.replace("\\\n", " ").splitlines():
        tokens = logical.split("#", 1)[0].split() if not logical.lstrip().startswith("#") else []
        if tokens:
            name = normalize(tokens[0].partition("==")[0])
            out[name] = [t.removeprefix("--hash=sha256:") for t in tokens[1:] if t.startswith("--hash=sha256:")]
    return out


def uv_hashes(uv: str, python: str, pins: list[tuple[str, str]], find_links: list[str], tmp: Path) -> dict[str, list[str]]:
    src, dst = tmp / "pins.in", tmp / "hashed.txt"
    src.write_text("".join(f"{n}=={v}\n" for n, v in pins), "utf-8")
    cmd = [uv, "pip", "compile", "--quiet", "--no-deps", "--generate-hashes", "--no-annotate", "--no-header",
           "--python", python, "--index-strategy", "unsafe-best-match", str(src), "-o", str(dst)]
    for link in find_links:
        cmd += ["--find-links", link]
    run(cmd)
    return parse_hashes(dst.read_text("utf-8"))


def pip_hashes(python: str, name: str, version: str, tmp: Path) -> list[str]:
    """Download the file pip would install for this pin (PyTorch CPU index as a fallback) and hash it."""
    dest = Path(tempfile.mkdtemp(dir=tmp))
    base = [python, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest), f"{name}=={version}"]
    first = subprocess.run(base, capture_output=True, text=True)
    if first.returncode != 0:
        print(f"lock: {name}=={version} not found on the configured indexes; trying {TORCH_INDEX}", file=sys.stderr)
        run(base + ["--extra-index-url", TORCH_INDEX])
    return sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in dest.iterdir())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="the venv's interpreter, whose distributions are pinned")
    ap.add_argument("--uv", required=True, help="the uv executable that collects the index's hashes")
    ap.add_argument("-o", "--output", type=Path, default=Path("requirements.lock"))
    args = ap.parse_args()
    pins = frozen_pins(args.python)
    find_links = [p for p in re.split(r"[\s]+", os.environ.get("PIP_FIND_LINKS", "")) if p]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        hashes = uv_hashes(args.uv, args.python, [p for p in pins if "+" not in p[1]], find_links, tmp)
        blocks = []
        for name, version in pins:
            digests = sorted(hashes.get(normalize(name)) or pip_hashes(args.python, name, version, tmp))
            blocks.append(f"{name}=={version}" + "".join(f" \\\n    --hash=sha256:{h}" for h in digests) + "\n")
    args.output.write_text(HEADER + "".join(blocks), "utf-8")
    print(f"lock: wrote {args.output} ({len(pins)} pins, {sum(b.count('--hash=') for b in blocks)} hashes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
