"""pytest glue for the integration tests: each test_* function is one
result. The tests register what they start (ferryd, backends, temporary
files) with ferrytest.cleanup; this runs those cleanups after each test, in
reverse order, and fails the test if one raises (a ferryd that exited
non-zero, printed a sanitizer report, or left a process naming its
directory running). The files also run alone, without
pytest: python3 test_forward.py [NAME...] (ferrytest.Runner).

    FERRYD=build/daemon/ferryd FERRYCTL=build/daemon/ferryctl \
      python3 -m pytest -n 2 --dist loadfile tests/integration
"""
import sys
import traceback

import pytest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import ferrytest  # noqa: E402


def run_cleanups():
    errors = []
    for fn in reversed(ferrytest.runner.cleanups):
        try:
            fn()
        except Exception:
            errors.append(traceback.format_exc())
    ferrytest.runner.cleanups.clear()
    return errors


@pytest.fixture(autouse=True)
def ferry_cleanups():
    # Something registered before the test began was started outside any
    # test: by a module-level setup()/setup_module() (pytest runs one named
    # `setup` as the module's setup), or at import. Stop it and say so, rather
    # than drop it and leave its ferryd running forever.
    if ferrytest.runner.cleanups:
        errors = run_cleanups()
        pytest.fail("started outside a test (a module-level setup()?), stopped now:\n" +
                    "\n".join(errors), pytrace=False)
    yield
    errors = run_cleanups()
    if errors:
        pytest.fail("cleanup failed:\n" + "\n".join(errors), pytrace=False)
