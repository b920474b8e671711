"""The pinned environment: installed distributions compared with the complete lock file."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;\\#]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class EnvReport:
    lock_path: Path | None
    lock_hash: str | None
    installed: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)  # name -> locked version
    mismatched: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (locked, installed)
    extra: dict[str, str] = field(default_factory=dict)  # installed but not locked
    wanted: Path | None = None  # the lock file the config names, found or not

    @property
    def drift(self) -> int:
        """Packages that differ from the lock (missing or another version); extras are listed, not counted."""
        return len(self.missing) + len(self.mismatched)

    def lines(self) -> list[str]:
        out = [f"{n}: locked {a}, installed {b}" for n, (a, b) in sorted(self.mismatched.items())]
        out += [f"{n}: locked {v}, not installed" for n, v in sorted(self.missing.items())]
        return out

    def installed_text(self) -> str:
        return "".join(f"{n}=={v}\n" for n, v in sorted(self.installed.items()))


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text("utf-8").splitlines():
        m = _LINE.match(raw)
        if m:
            pins[normalize(m.group(1))] = m.group(2)
    return pins


def installed_distributions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out[normalize(name)] = dist.version
    return out


def compare_env(lock_path: Path | None, ignore: tuple[str, ...] = ("pytest-genai",)) -> EnvReport:
    installed = installed_distributions()
    if lock_path is None or not lock_path.is_file():
        return EnvReport(None, None, installed, wanted=lock_path)
    pins = read_lock(lock_path)
    lock_hash = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    ignored = {normalize(i) for i in ignore}
    missing = {n: v for n, v in pins.items() if n not in installed and n not in ignored}
    mismatched = {n: (v, installed[n]) for n, v in pins.items() if n in installed and installed[n] != v and n not in ignored}
    extra = {n: v for n, v in installed.items() if n not in pins and n not in ignored}
    return EnvReport(lock_path, lock_hash, installed, missing, mismatched, extra, wanted=lock_path)
