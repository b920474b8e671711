"""The test suite's own footing: what keeps one test from breaking the process the next one runs in."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import SITE_PACKAGES, installed_library

# torch's first import of this module registers an operator library, which a second import refuses (CI saw it)
TORCH_MODULE = "torch.distributed._functional_collectives"


def test_an_installed_library_imported_by_an_in_process_session_is_kept_for_the_next(pytester: pytest.Pytester) -> None:
    """pytester drops what an in-process session imported; an installed library stays, the same objects, so the next
    test in this worker does not import it a second time (torch's second import crashed CI)."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed in this environment")
    pytester.makepyfile(test_imports=f"import {TORCH_MODULE} as m\n\ndef test_it():\n    assert m.__name__\n")
    first = sys.modules.get(TORCH_MODULE)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    kept = sys.modules.get(TORCH_MODULE)
    assert kept is not None and (first is None or kept is first)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)  # no second registration
    assert sys.modules.get(TORCH_MODULE) is kept


def test_a_session_keeps_a_site_packages_module_and_drops_its_own(pytester: pytest.Pytester) -> None:
    """The same, whatever this worker imported before: a module that appears in site-packages during an in-process
    session is kept; the session's own modules (a user's module, its test file) are dropped."""
    fake = "genai_harness_installed_xyz"
    pytester.makepyfile(user_module_xyz="VALUE = 1\n", test_user=f"""
import sys, types
import user_module_xyz

def test_it():
    m = types.ModuleType({fake!r})
    m.__file__ = {SITE_PACKAGES[0]!r} + {fake!r} + ".py"
    sys.modules[m.__name__] = m
    assert user_module_xyz.VALUE == 1
""")
    try:
        pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
        assert fake in sys.modules
    finally:
        sys.modules.pop(fake, None)
    assert "user_module_xyz" not in sys.modules and "test_user" not in sys.modules
    assert not installed_library("pytest_genai") and installed_library("pytest") and installed_library("yaml")
