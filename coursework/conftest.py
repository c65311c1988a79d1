"""The grading machinery shared by every assignment: which file to grade, and messages that teach.

A grader is an ordinary pytest module (``coursework/<assignment>/test_<assignment>.py``) whose tests take
the ``solution`` fixture: the student's file, imported as a module. By default that is the starter file
in the assignment's folder (named by the grader's ``STARTER``), so after filling in its gaps::

    python -m pytest coursework/01_backward

grades it. To grade a copy kept elsewhere::

    python -m pytest coursework/01_backward --solution path/to/my_softsign.py

Two hooks make failures read as feedback rather than as a stack trace:

* a test that runs into an unfilled gap (``raise NotImplementedError("your code here")``) reports which
  function of which file still has to be written, and where;
* the header and the summary say which file was graded and how many checks it passed.

The root test run (``python -m pytest`` with ``testpaths = tests``) never loads this file; the tests in
``tests/test_coursework.py`` run each grader against the library's reference answers, the untouched
starters and deliberately wrong answers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid

import pytest

import scratchgen as sg


def pytest_addoption(parser):
    parser.addoption(
        "--solution", default=None, metavar="PATH",
        help="the file to grade (default: the starter file in the assignment's folder, which you edit)",
    )


def _solution_path(config, module) -> str:
    given = config.getoption("--solution")
    if given:
        return os.path.abspath(os.path.join(config.invocation_params.dir, given))
    return os.path.join(os.path.dirname(module.__file__), module.STARTER)


def load_solution(path: str):
    """Import the file at ``path`` as a fresh module (a new name each time, so nothing is cached)."""
    if not os.path.isfile(path):
        pytest.fail(f"no file to grade at {path}: pass --solution path/to/your_file.py", pytrace=False)
    name = f"solution_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # a syntax error or a failing import: say so, not a collection crash
        pytest.fail(f"your file {path} could not be imported: {type(err).__name__}: {err}", pytrace=False)
    return module


@pytest.fixture(scope="module")
def solution(request):
    """The student's module. Tests read its functions and classes as ``solution.<name>``; the names the
    grader's ``REQUIRED`` lists must be there (as in the starter file)."""
    path = _solution_path(request.config, request.module)
    module = load_solution(path)
    missing = [name for name in getattr(request.module, "REQUIRED", ()) if not hasattr(module, name)]
    if missing:
        pytest.fail(f"{path} has no {', '.join(missing)}: keep the names of the starter file "
                    f"{request.module.STARTER}", pytrace=False)
    return module


@pytest.fixture(autouse=True)
def _seeded():
    """Each check starts from the same random state, so a grade does not depend on test order."""
    sg.manual_seed(0)
    yield


def pytest_report_header(config, start_path=None):
    given = config.getoption("--solution")
    return f"grading: {given if given else 'the starter file of each assignment (edit it, then run again)'}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report a failed check as its message, and an unfilled gap as the function and line to write.

    Other errors (an exception inside the student's code) keep pytest's full traceback, which is what
    finding them needs.
    """
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not hasattr(item, "module"):
        return
    if call.excinfo.errisinstance(NotImplementedError):
        student_file = _solution_path(item.config, item.module)
        where = ""
        for entry in reversed(call.excinfo.traceback):  # the innermost frame in the student's file
            if os.path.abspath(str(entry.path)) == student_file:
                where = f" ({entry.name} in {student_file}, line {entry.lineno + 1})"
                break
        report.longrepr = (
            f"{item.name}: this check reached a gap that is not filled in yet{where}: "
            f"NotImplementedError: {call.excinfo.value}\n"
            f"Replace the `raise NotImplementedError(...)` marked YOUR CODE HERE with your answer, then run "
            f"the grader again."
        )
    elif call.excinfo.errisinstance(AssertionError):
        grader = [e for e in call.excinfo.traceback if str(e.path) == str(item.fspath)]
        message = str(call.excinfo.value).split("\nassert ")[0].strip()  # drop pytest's rewritten expression
        if grader and message:
            report.longrepr = f"{item.name}: {message}\n(checked at {item.fspath.basename}:{grader[-1].lineno + 1})"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    passed, failed = len(stats.get("passed", [])), len(stats.get("failed", [])) + len(stats.get("error", []))
    if passed + failed:
        verdict = "all checks pass: well done." if not failed else "read the first failure above, fix it, run again."
        terminalreporter.write_line(f"grade: {passed} of {passed + failed} checks pass; {verdict}")
