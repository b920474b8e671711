"""Reading a lock file into pins: pip requirements files (pip freeze, pip-compile, uv pip compile,
`pytest-genai lock`) and uv.lock. What the pins mean for the installed packages is decided in envlock.py.

A requirements lock line is one of:
- `name==version` (extras `name[x]==1.0`, an environment marker `; python_version < "3.12"`, `--hash=` options on
  `\\`-continued lines, comments and `# via` lines around it): an exact pin;
- `name @ URL` (`file:///…`, `https://…whl`): a direct reference; its version is read from the URL's wheel or sdist
  file name when it has one. `name @ git+https://…@rev` (also hg+, svn+, bzr+): a VCS pin;
- `-e PATH`, `-e file:…`, `-e git+…#egg=name`: an editable install; its name comes from `#egg=`, else from the
  project's pyproject.toml (a relative path is taken from the lock's folder), else from the installed distribution
  whose direct_url.json points at that folder (envlock.py);
- a bare `URL#egg=name`: read as `name @ URL`;
- index options (`--index-url`, `--extra-index-url`, `--find-links`, …), which say where files come from.
A pin whose marker is false for this interpreter is kept with `applies=False`: it is not expected here. Anything
else (a range, no version, `-r`/`-c` includes, other options, a URL without a name, a distribution pinned twice
for this interpreter) is an error naming the file and line, so that a lock cannot silently pin less than it seems.

uv.lock (TOML, read with tomllib) gives one pin per `[[package]]` table: its `version` when its source is a
registry, git, URL or path, and a version-less `source` pin for the project itself and workspace members
(`source = { editable = … }` / `{ virtual = … }`) or any package without a version. poetry.lock, Pipfile.lock,
pdm.lock, pylock.toml and other TOML/JSON/YAML files are refused.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

FIX = "generate one with `pytest-genai lock`"
VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_LEAD = re.compile(rf"^({_NAME.pattern})\s*(?:\[|@|==|~=|>=|<=|!=|<|>|;|$)")
_HASH = re.compile(r"^--hash=(?:sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$")
_COMMENT = re.compile(r"(^|\s)#.*$")
_TOML_KEY = re.compile(r"^[A-Za-z0-9_.\"'-]+\s*=(?!=)\s*\S")
_TOML_TABLE = re.compile(r"^\[\[?[A-Za-z0-9_.\"' -]+\]\]?$")
_TOML_LINE = re.compile(r"at line (\d+)")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9._-]+)")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_OTHER_LOCKS = {"uv.lock": "uv.lock", "poetry.lock": "poetry.lock", "pipfile.lock": "Pipfile.lock", "pdm.lock": "pdm.lock"}
# Lines of these pip options say where files come from, not which versions: pip-compile writes --index-url ones.
_INDEX_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index",
                  "--pre", "--prefer-binary", "--only-binary", "--no-binary"}


class EnvLockError(Exception):
    """The lock file cannot be read as a complete lock; the message is `file:line: what is wrong`."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def redact(url: str) -> str:
    """A URL without the user and password it may carry (index tokens stay out of messages and reports)."""
    return _USERINFO.sub("***@", url)


def file_path(url: str) -> str | None:
    """The local path of a `file:` URL, else None."""
    parts = urlsplit(url)
    return url2pathname(unquote(parts.path)) if parts.scheme == "file" else None


def version_in_url(name: str, url: str) -> str | None:
    """The version in a wheel or sdist file name at the end of the URL, when it is this distribution's."""
    filename = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    try:
        if filename.endswith(".whl"):
            found, version, _build, _tags = parse_wheel_filename(filename)
        elif filename.endswith((".tar.gz", ".zip")):
            found, version = parse_sdist_filename(filename)
        else:
            return None
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return str(version) if normalize(found) == name else None


@dataclass(frozen=True)
class Pin:
    """One lock entry. kind: `version` (an exact version), `url` (a direct reference; `version` from its file name
    or None), `vcs`, `editable` (installed, any version), `source` (uv.lock's project or a package without a
    version: listed, not compared). name is normalised; "" for an editable folder whose name is not known yet."""

    name: str
    line: int
    kind: str
    version: str | None = None
    url: str | None = None
    applies: bool = True

    @property
    def locked(self) -> str:
        """What the lock says, for a report line (credentials removed)."""
        if self.kind == "version":
            return str(self.version)
        if self.kind == "editable":
            return f"-e {redact(str(self.url))} (editable)"
        if self.kind == "source":
            return f"{self.url} (not compared)"
        return f"@ {redact(str(self.url))}"

    def requirement(self) -> str:
        """The pin as a pip requirement line (no hashes, no marker)."""
        if self.kind == "editable":
            return f"-e {self.url}"
        if self.kind in ("url", "vcs"):
            return f"{self.name} @ {self.url}"
        return f"{self.name}=={self.version}" if self.version else self.name


@dataclass(frozen=True)
class Lock:
    """A lock read from `path`. format `requirements`: every pin that applies must be installed; `uv.lock`: it
    lists every platform, extra and group, so a locked package that is not installed is not drift."""

    path: Path
    format: str
    pins: tuple[Pin, ...]


def _other_format(path: Path, text: str) -> tuple[int, str] | None:
    """(line, what it looks like) when the file is another tool's lock or a TOML/JSON/YAML file, else None."""
    lines = text.splitlines()
    first = next(((i, s.strip()) for i, s in enumerate(lines, 1) if s.strip() and not s.lstrip().startswith("#")), None)
    header = "\n".join(lines[:5])
    by_name = _OTHER_LOCKS.get(path.name.lower())
    if by_name is None and path.name.lower().startswith("pylock") and path.suffix == ".toml":
        by_name = "pylock.toml"
    if by_name is None and path.suffix.lower() in (".toml", ".json", ".yaml", ".yml"):
        by_name = path.suffix[1:].upper().replace("YML", "YAML")
    if first is None:
        return (1, by_name) if by_name else None
    line, s = first
    if s.startswith("{") or (s.startswith("[") and not _TOML_TABLE.match(s)):
        return line, by_name or ("Pipfile.lock" if '"_meta"' in text else "JSON")
    if _TOML_TABLE.match(s) or _TOML_KEY.match(s):
        if "@generated by Poetry" in header or ("[[package]]" in text and "content-hash" in text):
            return line, "poetry.lock"
        if "[[package]]" in text and ("source = {" in text or s.startswith(("version =", "revision ="))):
            return line, "uv.lock"
        if by_name:
            return line, by_name
        if "@generated by PDM" in header:
            return line, "pdm.lock"
        if s.startswith("lock-version"):
            return line, "pylock.toml"
        return line, "TOML"
    return (line, by_name) if by_name else None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Comment-free logical lines (backslash continuations joined) with the number of the line each starts on."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = no
        s = _COMMENT.sub("", raw).rstrip()
        if s.endswith("\\"):
            buf.append(s[:-1])
            continue
        buf.append(s)
        joined = " ".join(p.strip() for p in buf).strip()
        buf = []
        if joined:
            out.append((start, joined))
    if buf and (joined := " ".join(p.strip() for p in buf).strip()):
        out.append((start, joined))
    return out


def _option_name(token: str) -> str:
    """The option itself, never its value (which may hold an index URL with credentials)."""
    return token.split("=", 1)[0] if token.startswith("--") else token[:2]


def _is_url_or_path(req: str) -> bool:
    return ("://" in req or req.startswith((".", "/", "~", "file:"))
            or req.endswith((".whl", ".tar.gz", ".zip")))


def _project_name(folder: Path) -> str | None:
    """[project] name of the pyproject.toml in a source folder, if it says."""
    try:
        data = tomllib.loads((folder / "pyproject.toml").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = data.get("project", {}).get("name") if isinstance(data.get("project"), dict) else None
    return normalize(name) if isinstance(name, str) and _NAME.fullmatch(name) else None


def _editable(path: Path, no: int, opts: list[str]) -> Pin:
    first = opts[0]
    attached = first.split("=", 1)[1] if first.startswith("--editable=") else first[2:] if first.startswith("-e") else ""
    rest = opts[1:] if attached else opts[2:]
    target = attached or (opts[1] if len(opts) > 1 else "")
    if not target:
        raise EnvLockError(path, no, f"`{_option_name(first)}` without a path or URL")
    if rest:
        raise EnvLockError(path, no, f"an editable install takes no options here (`{_option_name(rest[0])}`)")
    egg = _EGG.search(target)
    if egg:
        return Pin(normalize(egg.group(1)), no, "editable", url=target)
    local = file_path(target) if target.startswith("file:") else None if "://" in target else target
    if local is None:
        raise EnvLockError(path, no, f"`{_option_name(first)} {redact(target)}` has no #egg=name: cannot tell which "
                                     "distribution it installs")
    folder = Path(local).expanduser()
    folder = (path.parent / folder).resolve() if not folder.is_absolute() else folder
    return Pin(_project_name(folder) or "", no, "editable", url=str(folder))


def _applies(path: Path, no: int, req: Requirement) -> bool:
    if req.marker is None:
        return True
    try:
        return bool(req.marker.evaluate({"extra": ""}))
    except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker) as exc:
        raise EnvLockError(path, no, f"`{req.name}`: its environment marker cannot be evaluated here ({exc})") from None


def _requirement_pin(path: Path, no: int, line: str) -> Pin | None:
    """The pin of one logical requirements line, None for an index option line, EnvLockError for anything else."""
    tokens = line.split()
    head = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
    req, opts = " ".join(tokens[:head]), tokens[head:]
    if not req:
        first = _option_name(opts[0])
        if first in _INDEX_OPTIONS:
            return None
        if first in ("-e", "--editable"):
            return _editable(path, no, opts)
        if first in ("-r", "--requirement", "-c", "--constraint"):
            why = f"`{first}` includes another file: the lock must list every pin itself ({FIX})"
        elif first == "--hash":
            why = "a --hash option without a pin before it (a missing `\\` at the end of the line above?)"
        else:
            why = f"option `{first}` is not supported in the lock: only pins, -e lines and index options"
        raise EnvLockError(path, no, why)
    if _is_url_or_path(req) and not _LEAD.match(req):
        egg = _EGG.search(req)
        if egg is None:
            raise EnvLockError(path, no, "this line is a URL or path without a distribution name: write it as "
                                         f"`name @ URL`, as pip freeze does ({FIX})")
        req = f"{egg.group(1)} @ {req}"
    lead = _LEAD.match(req)
    label = f"`{lead.group(1)}`" if lead else "this line"
    try:
        parsed = Requirement(req)
    except InvalidRequirement:
        raise EnvLockError(path, no, f"{label} is not a `name==version` or `name @ URL` pin ({FIX})") from None
    name = normalize(parsed.name)
    bad = next((o for o in opts if not _HASH.match(o)), None)
    if bad is not None:
        what = "a malformed --hash (want --hash=sha256:<64 hex>)" if bad.startswith("--hash") else f"unsupported option `{_option_name(bad)}`"
        raise EnvLockError(path, no, f"`{parsed.name}`: {what}")
    applies = _applies(path, no, parsed)
    if parsed.url:
        kind = "vcs" if parsed.url.startswith(VCS_PREFIXES) else "url"
        version = version_in_url(name, parsed.url) if kind == "url" else None
        return Pin(name, no, kind, version, parsed.url, applies)
    specs = list(parsed.specifier)
    if not specs:
        raise EnvLockError(path, no, f"{label} has no version: use name==version ({FIX})")
    if len(specs) > 1 or specs[0].operator != "==" or "*" in specs[0].version:
        raise EnvLockError(path, no, f"{label} is a version range, not an exact pin: use name==version ({FIX})")
    return Pin(name, no, "version", specs[0].version, None, applies)


def _read_requirements(path: Path, text: str) -> Lock:
    pins: list[Pin] = []
    where: dict[str, int] = {}
    for no, line in _logical_lines(text):
        pin = _requirement_pin(path, no, line)
        if pin is None:
            continue
        if pin.applies and pin.name:
            if pin.name in where:
                raise EnvLockError(path, no, f"`{pin.name}` is pinned twice (first on line {where[pin.name]})")
            where[pin.name] = no
        pins.append(pin)
    if not pins:
        what = "empty file" if not text.strip() else "no pins"
        raise EnvLockError(path, 1, f"{what}: the lock must list every installed distribution ({FIX})")
    return Lock(path, "requirements", tuple(pins))


def _read_uv_lock(path: Path, text: str) -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = _TOML_LINE.search(str(exc))
        raise EnvLockError(path, int(at.group(1)) if at else 1, f"not a valid uv.lock: {exc}") from None
    tables = [no for no, raw in enumerate(text.splitlines(), 1) if raw.strip() == "[[package]]"]
    packages = data.get("package")
    if not isinstance(packages, list) or not packages:
        raise EnvLockError(path, 1, f"a uv.lock without [[package]] tables pins nothing ({FIX})")
    pins: list[Pin] = []
    for i, table in enumerate(packages):
        no = tables[i] if i < len(tables) else 1
        name, version, source = table.get("name"), table.get("version"), table.get("source", {})
        if not isinstance(name, str) or not _NAME.fullmatch(name) or not isinstance(source, dict):
            raise EnvLockError(path, no, "a [[package]] table without a valid `name` and `source`")
        if version is not None and not isinstance(version, str):
            raise EnvLockError(path, no, f"`{name}`: `version` is not a string")
        kind = next((k for k in ("editable", "virtual") if k in source), None)
        if kind or version is None:
            where = source.get(kind) if kind else next((f"{k} {v}" for k, v in source.items()), "no source")
            pins.append(Pin(normalize(name), no, "source", version, f"{kind or 'no version'}: {redact(str(where))}"))
        else:
            pins.append(Pin(normalize(name), no, "version", version))
    return Lock(path, "uv.lock", tuple(pins))


def parse_lock(path: Path) -> Lock:
    """The pins of a requirements lock or a uv.lock; EnvLockError (file:line: why) for anything else."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise EnvLockError(path, 1, "not a pip requirements lock: not UTF-8 text") from None
    other = _other_format(path, text)
    if other is not None and other[1] == "uv.lock":
        return _read_uv_lock(path, text)
    if other is not None:
        raise EnvLockError(path, other[0], f"not a pip requirements lock or uv.lock: looks like {other[1]}; {FIX}")
    return _read_requirements(path, text)
