"""A short run of the mutation fuzzer (tests/fuzz.py; the long run is `python tests/fuzz.py`):
every mutant of small valid models ends in exit 0 or in one clean line with exit 2, never a
traceback, a timeout or a folder left behind; compiled mutants build with -Werror and run clean
under ASan and UBSan on extreme inputs."""

import fuzz_tflite
from fuzz import fuzz


def test_mutants_never_crash_and_compiled_ones_run_clean_under_sanitizers():
    problems = []
    outcomes = fuzz(mutants=400, seed=20261129, sanitize_count=12, report=problems.append)
    assert not problems, "\n".join(problems[:5])
    assert set(outcomes) <= {"ok", "refused", "sanitized clean"}, outcomes
    assert outcomes["refused"] > 100 and outcomes["ok"] > 20 and outcomes["sanitized clean"] == 12, outcomes


def test_tflite_mutants_never_crash_and_compiled_ones_run_clean_under_sanitizers():
    """The same promise for .tflite input (tests/fuzz_tflite.py): corrupted flatbuffers, indices and buffers
    out of range, absurd shapes, hostile names, bad quantization, unknown op codes and versions."""
    problems = []
    outcomes = fuzz_tflite.fuzz(mutants=300, seed=20261206, sanitize_count=6, report=problems.append)
    assert not problems, "\n".join(problems[:5])
    assert set(outcomes) <= {"ok", "refused", "sanitized clean"}, outcomes
    assert outcomes["refused"] > 150 and outcomes["ok"] > 20 and outcomes["sanitized clean"] == 6, outcomes
