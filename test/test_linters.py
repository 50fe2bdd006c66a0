"""The linters the ROS package is held to: flake8 (99 columns) and pep257 (pydocstyle)."""

import ast
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


def test_the_runtime_package_never_imports_train():
    # DESIGN.md: the vehicle gets dense_ood_ros/ alone; train/ is not installed.
    offenders = []
    for path in sorted((ROOT / 'dense_ood_ros').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f'{path}: {name}' for name in names
                          if name == 'train' or name.startswith('train.')]
    assert not offenders
