#!/bin/sh
# Install the hashed lock into a venv: `scripts/install_lock.sh VENV_PYTHON [LOCK]` (run by `make setup`).
# First attempt: the configured indexes only (PyPI, plus PIP_FIND_LINKS where a machine has torch's wheel).
# torch==X+cpu is not on PyPI, so when that attempt fails, install torch alone from the PyTorch CPU index
# (with its pinned hash), then the rest. The extra index is never on the first attempt: an unreachable one
# costs seconds per package lookup.
set -eu
PY=$1
LOCK=${2:-requirements.lock}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
PIP="$PY -m pip --disable-pip-version-check"

if $PIP install --quiet --no-deps --require-hashes -r "$LOCK"; then
    exit 0
fi
echo "setup: installing the lock failed; retrying with torch from $TORCH_INDEX" >&2
TORCH_LOCK=$(mktemp "${TMPDIR:-/tmp}/torch-lock.XXXXXX")
trap 'rm -f "$TORCH_LOCK"' EXIT
# torch's block of the lock: its pin line and the --hash continuation lines after it.
awk '/^torch==/ {on = 1} on {print} on && !/\\$/ {exit}' "$LOCK" > "$TORCH_LOCK"
if ! grep -q '^torch==' "$TORCH_LOCK"; then
    echo "setup: $LOCK pins no torch; nothing to fall back to" >&2
    exit 1
fi
$PIP install --quiet --no-deps --require-hashes --extra-index-url "$TORCH_INDEX" -r "$TORCH_LOCK"
$PIP install --quiet --no-deps --require-hashes -r "$LOCK"
