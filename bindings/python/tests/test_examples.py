"""examples/python/*.py run, exit 0, and stay fast (they run in CI on every build)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.checkout

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "python").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip(), "an example should show what it did"
    # Quick, not hanging: each runs in well under a second, but starting Python and loading the
    # library can take seconds on a busy machine.
    assert elapsed < 20.0, f"{script.name} took {elapsed:.2f}s"
    if script.name == "cached_decorator.py":
        assert "ran 2 times for 12 calls" in r.stdout
        assert "fibonacci(90) = 2880067194370816120" in r.stdout
    if script.name == "health_check.py":
        assert '"status": "healthy"' in r.stdout
