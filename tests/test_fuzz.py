"""A short run of the mutation fuzzer (tests/fuzz.py; the long run is `python tests/fuzz.py`):
every mutant of small valid models ends in exit 0 or in one clean line with exit 2, never a
traceback, a timeout or a folder left behind; compiled mutants build with -Werror and run clean
under ASan and UBSan on extreme inputs."""

from fuzz import fuzz


def test_mutants_never_crash_and_compiled_ones_run_clean_under_sanitizers():
    problems = []
    outcomes = fuzz(mutants=400, seed=20261129, sanitize_count=12, report=problems.append)
    assert not problems, "\n".join(problems[:5])
    assert set(outcomes) <= {"ok", "refused", "sanitized clean"}, outcomes
    assert outcomes["refused"] > 100 and outcomes["ok"] > 20 and outcomes["sanitized clean"] == 12, outcomes
