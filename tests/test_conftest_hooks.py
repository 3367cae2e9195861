"""The suite's own guard: TVM's out-of-bounds warning on stderr fails the test that caused it."""

from __future__ import annotations

import pytest

from tests.conftest import OUT_OF_BOUNDS_WARNING, ROOT


def test_out_of_bounds_warning_on_file_descriptor_2_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        f"""
        import os

        def test_writes_the_warning():
            os.write(2, b"[00:00:00] transform.h:1261: Warning: {OUT_OF_BOUNDS_WARNING}.\\n")

        def test_quiet():
            os.write(2, b"some other line\\n")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*TVM built a gather it cannot prove in bounds during call*"])
