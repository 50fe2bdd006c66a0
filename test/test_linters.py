"""The linters the ROS package is held to: flake8 (99 columns) and pep257 (pydocstyle)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args):
    return subprocess.run([sys.executable, '-m', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_flake8_is_clean():
    # Configuration (99 columns, single quotes, excludes) lives in setup.cfg.
    result = _run(['flake8', '.'])
    assert result.returncode == 0, result.stdout + result.stderr


def test_pep257_is_clean():
    result = _run(['pydocstyle', '.'])
    assert result.returncode == 0, result.stdout + result.stderr
