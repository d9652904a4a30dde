import os
import sys
from pathlib import Path

# Tests import their shared helpers (helpers.py, models.py) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hypothesis import settings  # noqa: E402

# CI draws the same examples every run (a failure there is reproducible); locally each run explores anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
