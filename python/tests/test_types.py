"""The package's type hints hold (mypy over the SDK, the generated gRPC modules aside)."""

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "polaroid", "--ignore-missing-imports",
         "--exclude", r"polaroid/v1/.*_grpc\.py"],
        cwd=HERE, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
