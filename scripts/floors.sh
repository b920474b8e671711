#!/bin/sh
# The tested floors: `make test-floors` builds .venv-floors with the lowest version of every direct requirement of
# pytest-genai (core and every extra: `uv pip compile --resolution lowest-direct` over pyproject.toml) and runs the
# test suite on it, so that each `>=` floor in pyproject.toml is one the suite passed on. Transitive dependencies
# take their newest compatible versions (what a user resolving today gets).
# torch is the exception: its floor's wheels on PyPI are CUDA builds of several GB, so the floors env takes the CPU
# build of the lock (`torch==2.13.0`, from the local wheel folder or the PyTorch CPU index); torch's floor is not tested.
set -eu
PYTHON=${PYTHON:-python3}
TOOLS=${TOOLS:-build/lock-tools}
VENV=${VENV:-.venv-floors}
UV_VERSION=${UV_VERSION:-0.13.9}
OUT=build/floors.txt
mkdir -p build
test -x "$TOOLS/bin/uv" || { $PYTHON -m venv "$TOOLS" && "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"; }
TORCH=$(sed -n 's/^\(torch==[^ +]*\).*/\1/p' requirements.lock)
SETUPTOOLS=$(sed -n 's/^\(setuptools==[^ ]*\).*/\1/p' requirements.lock)  # the lock's torch wants setuptools>=77
"$TOOLS/bin/uv" pip compile pyproject.toml --extra all --extra test --extra server --extra docs --resolution lowest-direct \
    --python-version 3.11 --no-header --no-annotate --quiet -o "$OUT.tmp"
sed "s/^torch==.*/$TORCH/" "$OUT.tmp" > "$OUT" && rm -f "$OUT.tmp"
echo "floors: $(grep -ciE '^(pytest|mlflow-skinny|sqlalchemy|alembic|pandas|pyyaml|jsonschema|numpy|jinja2|packaging|transformers|gguf|accelerate|faiss-cpu|alt-profanity-check)==' "$OUT") direct requirements at their floor ($OUT)"
$PYTHON -m venv --clear "$VENV"  # fresh each time: nothing left from another resolution
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$OUT" "$SETUPTOOLS"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
"$VENV/bin/python" -m pip check
