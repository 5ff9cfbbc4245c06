"""pytest glue for the integration tests: each test_* function is one
result. The tests register what they start (ferryd, backends, temporary
files) with ferrytest.cleanup; this runs those cleanups after each test, in
reverse order, and fails the test if one raises (a ferryd that exited
non-zero or printed a sanitizer report). The files also run alone, without
pytest: python3 test_forward.py [NAME...] (ferrytest.Runner).

    FERRYD=build/daemon/ferryd FERRYCTL=build/daemon/ferryctl \
      python3 -m pytest -n 2 --dist loadfile tests/integration
"""
import sys
import traceback

import pytest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import ferrytest  # noqa: E402


@pytest.fixture(autouse=True)
def ferry_cleanups():
    ferrytest.runner.cleanups.clear()
    yield
    errors = []
    for fn in reversed(ferrytest.runner.cleanups):
        try:
            fn()
        except Exception:
            errors.append(traceback.format_exc())
    ferrytest.runner.cleanups.clear()
    if errors:
        pytest.fail("cleanup failed:\n" + "\n".join(errors), pytrace=False)
