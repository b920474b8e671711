"""Target: without --genai-config the plugin adds under 20 ms to pytest start-up.

Compares `pytest --co` on a one-test folder with the plugin loaded and with `-p no:genai`,
interleaved, and reports the medians and their difference."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from _util import PY, alternate, median, record

ROUNDS = 21


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "test_one.py").write_text("def test_one():\n    assert True\n")
        base = [PY, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:anyio"]
        times = alternate({"with_plugin": base, "without_plugin": base + ["-p", "no:genai"]}, d, ROUNDS)
    w, wo = median(times["with_plugin"]), median(times["without_plugin"])
    return {"startup_with_plugin_ms": w * 1000, "startup_without_plugin_ms": wo * 1000,
            "startup_overhead_ms": (w - wo) * 1000, "rounds": ROUNDS}


if __name__ == "__main__":
    json.dump(record("startup", main()), sys.stdout, indent=2)
    print()
