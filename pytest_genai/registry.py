"""One `Registry[T]` for everything found by name: metrics, pipelines, providers, toxicity classifiers,
packaged models. Entries may be lazy `"module:attr"` strings, imported on first lookup, so registering
the built-ins costs no import; an unknown name gets a did-you-mean (lm-evaluation-harness style)."""

from __future__ import annotations

import difflib
import threading
from typing import Any, Callable, Generic, Iterator, TypeVar

from pytest_genai.resolve import import_target

T = TypeVar("T")


class UnknownName(KeyError):
    """`str()` is the whole message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, check: Callable[[Any], bool] | None = None) -> None:
        self.kind = kind  # "metric", "pipeline", ... for messages
        self._entries: dict[str, T | str] = {}
        self._check = check
        self._lock = threading.Lock()

    def register(self, name: str, target: T | str, *, replace: bool = False) -> T | str:
        """`target` is the object or a lazy "module:attr" string. Re-registering needs `replace=True`, so
        a conftest cannot shadow a built-in by accident."""
        with self._lock:
            if name in self._entries and not replace and self._entries[name] is not target:
                raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to override it)")
            self._entries[name] = target
        return target

    def get(self, name: str) -> T:
        with self._lock:
            if name not in self._entries:
                raise UnknownName(self.unknown_message(name))
            entry = self._entries[name]
            if isinstance(entry, str) and ":" in entry:
                entry = import_target(entry)
                if self._check is not None and not self._check(entry):
                    raise TypeError(f"{self.kind} {name!r} -> {self._entries[name]!r} is not a valid {self.kind}")
                self._entries[name] = entry
            return entry  # type: ignore[return-value]

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name).lower().replace("-", "_"), list(self._entries), n=1, cutoff=0.6)
        hint = close[0] if close else None
        tip = f" — did you mean {hint!r}?" if hint else ""
        return f"unknown {self.kind} {name!r}{tip} (known: {', '.join(sorted(self._entries))})"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
