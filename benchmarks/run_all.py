"""`make bench`: run every benchmark in its own process, then one summary line per benchmark.

Each benchmark prints its own last line as ``<name>: <figure> ... goal ...: meets|MISSES``
(ratios measured within one run, never an absolute time as a verdict); this script collects
those lines so the verdicts sit together at the end. The 90-minute Table 3 reproduction is
not here; it has its own target, ``make reproduce``. A benchmark that crashes is reported as
such and makes the exit status non-zero; one that misses its goal does not (that is a
finding, not a failure of the command).
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (script, extra environment). node_overhead uses Fast DDS's large-data transport, as a
# deployment sending camera frames between processes should (see docs/node.md).
BENCHMARKS = [
    ('pipeline_overhead.py', {}),
    ('upsample_cost.py', {}),
    ('region_cost.py', {}),
    ('onnx_speed.py', {}),
    ('metrics_speed.py', {}),
    ('node_overhead.py', {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}),
    ('train_memory.py', {}),
    ('gpu_throughput.py', {}),
]


def run(script, extra_env):
    """Run one benchmark, echoing its output; return its summary line or a crash line."""
    name = os.path.splitext(script)[0]
    env = {**os.environ, **extra_env,
           'PYTHONPATH': ROOT + os.pathsep + os.environ.get('PYTHONPATH', '')}
    print(f'== {name}', flush=True)
    process = subprocess.run([sys.executable, os.path.join(HERE, script)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             check=False)
    print(process.stdout, end='', flush=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith(f'{name}:')]
    if process.returncode != 0 or not lines:
        return False, f'{name}: CRASHED (exit {process.returncode}); output above'
    return True, lines[-1]


def main():
    """Run all benchmarks and print the summary; exit 1 if any crashed."""
    results = [run(script, env) for script, env in BENCHMARKS]
    print('\n== summary')
    for _, line in results:
        print(line)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == '__main__':
    sys.exit(main())
