"""The pinned environment: installed distributions compared with the complete lock file (env drift).

The lock is what users already have (lockfmt.py reads it): `pip freeze` output as is, pip-compile or
`uv pip compile` output (comments, `# via`, hashes, extras, markers, `-e` lines, index options), a uv.lock, or the
file `pytest-genai lock` writes. The drift is the number of distributions that are
- missing: a pin that applies to this interpreter (its marker is true) and is not installed; a pin whose marker is
  false is not expected here;
- mismatched: installed, but not as locked. An exact pin compares versions (PEP 440 equality: 1.0 == 1.0.0, but
  2.13.0+cpu != 2.13.0). A direct reference (`name @ file:///…whl`, `name @ https://…`) matches when the installed
  distribution's direct_url.json records the same URL (credentials and #fragments aside), or else when the URL's
  wheel/sdist file name gives the installed version; a folder URL without direct_url.json agreement is a mismatch.
  A VCS pin (`name @ git+https://…@rev`) matches when direct_url.json records the same repository and the revision
  is its commit (or a prefix of it, or the requested branch/tag). An editable pin (`-e path`, `-e git+…#egg=name`)
  only needs the distribution installed, at any version and from anywhere;
- extra: installed but pinned nowhere (or only by pins whose markers are false here).
pip, setuptools and wheel are never extra (pip freeze and pip-compile leave them out) but are compared when a lock
pins them. The project itself (`pytest-genai`, installed editable) is ignored by default, as before.
A uv.lock is compared by its own rules (`_uv_drift`).
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

from packaging.version import InvalidVersion, Version

from pytest_genai.tracking.lockfmt import (
    VCS_PREFIXES,
    EnvLockError,
    Lock,
    Pin,
    file_path,
    normalize,
    parse_lock,
    redact,
)

__all__ = ["NEVER_EXTRA", "EnvLockError", "EnvReport", "Installed", "compare_env", "installed_details",
           "installed_distributions", "normalize", "parse_lock", "read_lock"]

NEVER_EXTRA = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class EnvReport:
    lock_path: Path | None
    lock_hash: str | None
    installed: dict[str, str]
    missing: dict[str, str] = field(default_factory=dict)  # name -> what the lock says
    mismatched: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (locked, installed)
    extra: dict[str, str] = field(default_factory=dict)  # name -> installed version, not in the lock
    wanted: Path | None = None  # the lock file the config names, found or not

    @property
    def drift(self) -> int:
        """Distributions that differ from the lock: missing, another version, or installed but not locked."""
        return len(self.missing) + len(self.mismatched) + len(self.extra)

    def lines(self) -> list[str]:
        out = [f"{n}: locked {a}, installed {b}" for n, (a, b) in sorted(self.mismatched.items())]
        out += [f"{n}: locked {v}, not installed" for n, v in sorted(self.missing.items())]
        out += [f"{n}=={v}: installed, not in the lock" for n, v in sorted(self.extra.items())]
        return out

    def installed_text(self) -> str:
        return "".join(f"{n}=={v}\n" for n, v in sorted(self.installed.items()))


@dataclass(frozen=True)
class Installed:
    """An installed distribution: its name as its metadata spells it, version and direct_url.json (PEP 610)."""

    name: str
    version: str
    direct_url: dict[str, Any] | None = None
    source_tree: bool = False  # its metadata is a project folder's own (`*.egg-info` beside the code, on sys.path)

    def requirement(self) -> str:
        """How pip freeze states it without -e: `name==version`, or `name @ URL` for a direct-URL or editable
        install (a VCS one as `vcs+URL@commit`), the URL with its #subdirectory= as installed."""
        d = self.direct_url
        if not d or not isinstance(d.get("url"), str):
            return f"{self.name}=={self.version}"
        vcs = d.get("vcs_info") if isinstance(d.get("vcs_info"), dict) else None
        url = f"{vcs.get('vcs')}+{d['url']}@{vcs.get('commit_id')}" if vcs else d["url"]
        return f"{self.name} @ {url}" + (f"#subdirectory={d['subdirectory']}" if d.get("subdirectory") else "")

    @property
    def local_folder(self) -> bool:
        """Installed from a folder on this machine (`pip install -e .`, `pip install .`): the project's own checkout,
        whose path differs on every machine, so neither pinned by `pytest-genai lock` nor counted as unlocked."""
        d = self.direct_url
        return self.source_tree or bool(d and isinstance(d.get("dir_info"), dict) and str(d.get("url", "")).startswith("file:"))

    def shown(self) -> str:
        d = self.direct_url
        return self.version + (f" from {redact(d['url'])}" if d and isinstance(d.get("url"), str) else "")


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    try:
        text = dist.read_text("direct_url.json")
        data = json.loads(text) if text else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def installed_details() -> dict[str, Installed]:
    """Normalised name -> what is importable; the first on sys.path wins, as for imports."""
    out: dict[str, Installed] = {}
    for dist in metadata.distributions():
        if _vendored(dist):
            continue
        name, version, egg_info = _name_version(dist)
        if name and normalize(name) not in out:
            out[normalize(name)] = Installed(name, version, _direct_url(dist), egg_info and _in_source_tree(dist))
    return out


def _vendored(dist: metadata.Distribution) -> bool:
    """A copy another package carries inside itself (setuptools >= 71 puts its `_vendor` folder on sys.path when it
    is imported, so jaraco.*, autocommand... show up as distributions): not installed, not in any lock."""
    try:
        return "_vendor" in Path(str(dist.locate_file(""))).parts
    except Exception:  # noqa: BLE001 - a distribution that cannot say where it is: keep it
        return False


def _name_version(dist: metadata.Distribution) -> tuple[str | None, str, bool]:
    """(Name, Version, whether it is an egg-info) from the metadata file's header lines: parsing the whole file as
    `dist.metadata` does (an e-mail parser, twice for name and version) costs ~0.8 ms a distribution, a quarter of
    a second at session start in a typical env."""
    text = dist.read_text("METADATA")
    egg_info = False
    if text is None:
        text = dist.read_text("PKG-INFO")
        egg_info = text is not None
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            break  # the header ends at the first empty line
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in found:
            found[key] = value.strip()
    if "Name" not in found or "Version" not in found:  # an unusual file: the standard parser decides
        return dist.metadata["Name"], dist.version, egg_info
    return found["Name"], found["Version"], egg_info


def _in_source_tree(dist: metadata.Distribution) -> bool:
    """Of an egg-info (a dist-info is installed): one found outside the environment (the one an editable install
    leaves in the project, seen first when the project folder is on sys.path, as under `python -m pytest`) is the
    metadata of a local checkout."""
    try:
        where = Path(str(dist.locate_file(""))).resolve()
    except (OSError, TypeError, ValueError):
        return False
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *site.getsitepackages(), site.getusersitepackages())}
    return not any(where == r or r in where.parents for r in roots)


def installed_distributions() -> dict[str, str]:
    """Normalised name -> version of what is importable; the first on sys.path wins, as for imports."""
    return {n: d.version for n, d in installed_details().items()}


def _same_version(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return False


def _url_key(url: str) -> tuple[str, str]:
    """(where, revision) of a URL for comparison: no credentials, no fragment, a file path normalised; for a VCS
    URL (`git+https://host/repo@rev`) the repository without `.git` and the revision after the last `@`."""
    url = url.split("+", 1)[1] if url.startswith(VCS_PREFIXES) else url
    parts = urlsplit(url)
    local = file_path(url)
    if local is not None:
        return os.path.normpath(local), ""
    path, rev = parts.path, ""
    if "@" in path:
        path, rev = path.rsplit("@", 1)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, path.rstrip("/").removesuffix(".git"), parts.query, "")), rev


def _matches(pin: Pin, inst: Installed) -> bool:
    if pin.kind == "editable":
        return True
    if pin.kind == "version":
        return _same_version(str(pin.version), inst.version)
    d = inst.direct_url or {}
    where, rev = _url_key(str(pin.url))
    recorded = d.get("url")
    same_place = isinstance(recorded, str) and _url_key(recorded)[0] == where
    if pin.kind == "vcs":
        vcs = d.get("vcs_info") if isinstance(d.get("vcs_info"), dict) else {}
        commit = str(vcs.get("commit_id") or "")
        return same_place and bool(vcs) and (not rev or rev == vcs.get("requested_revision")
                                             or (len(rev) >= 7 and commit.startswith(rev)))
    return (same_place and "vcs_info" not in d) or (pin.version is not None and _same_version(pin.version, inst.version))


def _editable_owner(pin: Pin, installed: dict[str, Installed]) -> str | None:
    """The installed distribution whose direct_url.json points at an editable pin's folder."""
    folder = os.path.normpath(str(pin.url))
    for name, inst in installed.items():
        recorded = (inst.direct_url or {}).get("url")
        local = file_path(recorded) if isinstance(recorded, str) else None
        if local is not None and os.path.normpath(local) == folder:
            return name
    return None


def _named(lock: Lock, installed: dict[str, Installed]) -> Iterable[tuple[str, Pin]]:
    """(name, pin) for each pin; an editable folder without a known name is named after what is installed from
    it, else after the line itself (then it is missing)."""
    for pin in lock.pins:
        if pin.name:
            yield pin.name, pin
        else:
            yield _editable_owner(pin, installed) or f"line {pin.line}", pin


def _requirements_drift(lock: Lock, installed: dict[str, Installed], ignored: set[str]) -> tuple[dict, dict, set[str]]:
    missing: dict[str, str] = {}
    mismatched: dict[str, tuple[str, str]] = {}
    locked: set[str] = set()
    for name, pin in _named(lock, installed):
        if not pin.applies:
            continue
        locked.add(name)
        inst = installed.get(name)
        if name in ignored:
            continue
        if inst is None:
            missing[name] = pin.locked
        elif not _matches(pin, inst):
            mismatched[name] = (pin.locked, inst.version if pin.kind == "version" else inst.shown())
    return missing, mismatched, locked


def _uv_drift(lock: Lock, installed: dict[str, Installed], ignored: set[str]) -> tuple[dict, dict, set[str]]:
    """uv.lock lists the packages of every platform, extra and group, so a package it locks that is not installed is
    not drift; one installed at a version uv.lock does not give it (a name may be locked at several versions, one per
    resolution fork: any of them matches) is a mismatch, and one installed but absent from uv.lock is extra. The
    project and workspace members (`source = { editable = … }` / `{ virtual = … }`) and version-less entries are
    not version-compared."""
    by_name: dict[str, list[Pin]] = {}
    for pin in lock.pins:
        by_name.setdefault(pin.name, []).append(pin)
    mismatched: dict[str, tuple[str, str]] = {}
    for name, pins in by_name.items():
        inst = installed.get(name)
        if inst is None or name in ignored or any(p.kind != "version" for p in pins):
            continue
        if not any(_same_version(str(p.version), inst.version) for p in pins):
            mismatched[name] = (" or ".join(sorted({str(p.version) for p in pins})), inst.version)
    return {}, mismatched, set(by_name)


def read_lock(path: Path) -> dict[str, str]:
    """Normalised name -> exact version of the pins that apply here; EnvLockError for a file that is not a lock.
    From a requirements lock: the `==` pins whose markers hold and the direct references whose file name gives a
    version (editable, VCS and folder pins carry none: see parse_lock and Pin.requirement for every pin).
    From a uv.lock, which spans platforms: the locked version of each package installed here at a locked version."""
    lock = parse_lock(path)
    if lock.format == "requirements":
        return {p.name: p.version for p in lock.pins if p.applies and p.name and p.version and p.kind in ("version", "url")}
    installed = installed_distributions()
    return {p.name: p.version for p in lock.pins
            if p.kind == "version" and p.name in installed and _same_version(str(p.version), installed[p.name])}


def compare_env(lock_path: Path | None, ignore: tuple[str, ...] = ("pytest-genai",)) -> EnvReport:
    """Installed vs locked; no lock file gives lock_hash None (drift not computed), a bad one raises EnvLockError."""
    details = installed_details()
    installed = {n: d.version for n, d in details.items()}
    if lock_path is None or not lock_path.is_file():
        return EnvReport(None, None, installed, wanted=lock_path)
    lock = parse_lock(lock_path)
    lock_hash = hashlib.sha256(lock_path.read_bytes()).hexdigest()
    ignored = {normalize(i) for i in ignore}
    drift = _uv_drift if lock.format == "uv.lock" else _requirements_drift
    missing, mismatched, locked = drift(lock, details, ignored)
    extra = {n: v for n, v in installed.items()
             if n not in locked and n not in ignored and n not in NEVER_EXTRA and not details[n].local_folder}
    return EnvReport(lock_path, lock_hash, installed, missing, mismatched, extra, wanted=lock_path)
