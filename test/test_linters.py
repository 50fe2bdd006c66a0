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


def _project_imports():
    """Return {module: set of project modules it imports} for dense_ood_ros/ and train/.

    Imports inside functions count too: a lazy import only hides a circle from the import
    system, not from the reader.
    """
    modules = {}
    for package in ('dense_ood_ros', 'train'):
        for path in sorted((ROOT / package).rglob('*.py')):
            parts = path.relative_to(ROOT).with_suffix('').parts
            modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                # 'from train.data import cifar' imports the module train.data.cifar.
                targets.update(f'{node.module}.{alias.name}'
                               if f'{node.module}.{alias.name}' in modules else node.module
                               for alias in node.names)
        graph[name] = {target for target in targets if target in modules} - {name}
    return graph


def _circles(graph):
    """Return the strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while node not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_circle():
    # A circle means neither module can be read, tested or moved without the other.
    graph = _project_imports()
    assert 'train.evaluate_classify' in graph['train.evaluate']  # the walk sees lazy imports
    assert _circles(graph) == []
