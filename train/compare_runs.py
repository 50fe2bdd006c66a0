"""python -m train.compare_runs: Table 3 over seeds for runs trained and evaluated elsewhere.

``make reproduce`` trains its own runs. Runs with another budget or recipe (the demo-scale
arms of docs/method.md section 9) are trained by ``python -m train.joint`` and evaluated by
``python -m train.evaluate --score both --temperature 1 2 10 --json RUN/held.json``; this
command pairs them by seed and applies the method issue's target to them, with the same
statistics as ``make reproduce`` (train.seed_table)::

    python -m train.compare_runs --arm none=runs/none_s0,runs/none_s1,runs/none_s2 \
        --arm noise=runs/noise_s0,... --arm rnvp=runs/rnvp_s0,... \
        --method rnvp --baseline none --json benchmarks/results/arms.json

Each run directory holds ``model.pt`` (its training config, seed, iteration and commit are
read from it) and the evaluation JSON; ``misses.json`` of ``train.obstacle_misses`` is
added when present. Within an arm the runs may differ in their seed only, and every arm must
have the same seeds; anything else is refused by name, so a table never mixes recipes. The
configuration keys in which the arms differ are printed and recorded.

An arm whose run directories are gone can be taken from the JSON an earlier run of this
command wrote, which keeps every run's provenance and rows: ``--recorded NAME=PATH.json``.
The same checks apply to it as to directories.
"""

import argparse
import json
import os
import sys

from dense_ood_ros.atomic_file import write_json
from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint
from train.config import flatten
from train.seed_table import (comparisons, format_comparison, format_summary, METRICS,
                              MIOU_ALLOWANCE, SETTINGS, summarise, TARGET_SETTINGS)

MODEL_FILE = 'model.pt'
MISSES_FILE = 'misses.json'
# What read_run records of a run; a recorded run must have all of it.
RUN_KEYS = ('directory', 'seed', 'iteration', 'commit', 'command', 'config', 'images', 'rows',
            'below_road_median')


def split_named(text, option, form):
    """Return (name, value) from NAME=VALUE, or raise naming `option` and its `form`."""
    name, sep, value = text.partition('=')
    if not sep or not name or not value.strip(','):
        raise ValueError(f'{option} must be {form}, got {text!r}')
    return name, value


def parse_arm(text):
    """Return (name, [run directories]) from NAME=DIR[,DIR...]."""
    name, dirs = split_named(text, '--arm', 'NAME=DIR[,DIR...]')
    return name, [d for d in dirs.split(',') if d]


def read_arm(text, evaluation_name):
    """Return (name, runs) of one arm given as NAME=DIR[,DIR...]."""
    name, directories = parse_arm(text)
    return name, [read_run(directory, evaluation_name) for directory in directories]


def read_recorded(text, evaluation_name):
    """Return (name, runs) of one arm as recorded in an earlier compare_runs JSON."""
    name, path = split_named(text, '--recorded', 'NAME=FILE.json')
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise ValueError(f'{path} is not the JSON of train.compare_runs')
    if payload.get('evaluation') != evaluation_name:
        raise ValueError(f'{path} records the evaluation {payload.get("evaluation")!r}, not '
                         f'{evaluation_name!r}')
    recorded = payload.get('runs', {}).get(name)
    if not recorded:
        known = sorted(payload.get('runs', {}))
        raise ValueError(f'{path} records no arm {name} (it has {known})')
    runs = []
    for seed, run in sorted(recorded.items()):
        where = f'{path}, arm {name} seed {seed}'
        missing = [key for key in RUN_KEYS if key not in run]
        if missing:
            raise ValueError(f'{where} lacks {missing}')
        runs.append({**run, 'rows': table_rows(run, where),
                     'recorded_in': run.get('recorded_in', path)})
    return name, runs


def without_seed(config):
    """Return a training config without its seed, the one key runs of an arm differ in."""
    return {key: value for key, value in config.items() if key != 'seed'}


def differing_keys(configs):
    """Return the sorted dotted keys whose values are not the same in all `configs`."""
    flats = [flatten(config) for config in configs]
    keys = set().union(*flats)
    return sorted(key for key in keys if len({json.dumps(f.get(key)) for f in flats}) > 1)


def table_rows(evaluation, path):
    """Return the evaluation's rows in SETTINGS order, or raise naming the missing one."""
    by_setting = {(row['score'], float(row['temperature'])): row
                  for row in evaluation.get('rows', [])}
    rows = []
    for score, temperature in SETTINGS:
        row = by_setting.get((score, temperature))
        if row is None:
            raise ValueError(f'{path} has no {score} T={temperature:g} row; evaluate with '
                             '--score both --temperature 1 2 10')
        missing = [metric for metric in METRICS if metric not in row]
        if missing:
            raise ValueError(f'{path}: the {score} T={temperature:g} row lacks {missing}')
        rows.append({key: row[key] for key in ('score', 'temperature', *METRICS)})
    return rows


def read_json(path):
    """Return a JSON file's content, or raise ValueError naming the file."""
    try:
        with open(path, encoding='utf-8') as stream:
            return json.load(stream)
    except FileNotFoundError:
        raise ValueError(f'{path}: no such file') from None
    except json.JSONDecodeError as error:
        raise ValueError(f'{path}: not JSON ({error})') from None


def read_run(directory, evaluation_name):
    """Return one run: its provenance from model.pt, its table rows and its misses."""
    train = load_checkpoint(os.path.join(directory, MODEL_FILE)).train
    if 'config' not in train:
        raise ValueError(f'{os.path.join(directory, MODEL_FILE)} records no training config '
                         '(not written by train.joint)')
    path = os.path.join(directory, evaluation_name)
    evaluation = read_json(path)
    misses_path = os.path.join(directory, MISSES_FILE)
    misses = read_json(misses_path).get('summary') if os.path.exists(misses_path) else None
    return {'directory': directory, 'seed': train['config']['seed'],
            'iteration': train.get('iteration'), 'commit': train.get('git_commit'),
            'command': train.get('command'), 'config': train['config'],
            'images': evaluation.get('images'), 'rows': table_rows(evaluation, path),
            'below_road_median': misses}


def check_arms(arms):
    """Refuse arms whose runs differ in more than the seed, or whose seeds differ."""
    seeds = None
    for name, runs in arms.items():
        keys = differing_keys([without_seed(run['config']) for run in runs])
        if keys:
            raise ValueError(f'arm {name}: its runs differ in {", ".join(keys)}, not only in '
                             'the seed')
        arm_seeds = [run['seed'] for run in runs]
        if len(set(arm_seeds)) != len(arm_seeds):
            raise ValueError(f'arm {name}: seed repeated in {arm_seeds}')
        if seeds is None:
            seeds, first = sorted(arm_seeds), name
        elif sorted(arm_seeds) != seeds:
            raise ValueError(f'arm {name} has seeds {sorted(arm_seeds)} but arm {first} has '
                             f'{seeds}; runs pair by seed')
    return seeds


def verdict(compared, rows, *, method, baseline):
    """Return the target's parts and whether all hold.

    The method must beat every rival on AP and FPR95 at the TARGET_SETTINGS and keep its
    mean mIoU no more than MIOU_ALLOWANCE under the baseline's.
    """
    parts = []
    for entry in compared:
        if (entry['score'], entry['temperature']) in TARGET_SETTINGS:
            for metric in ('ap', 'fpr95'):
                parts.append({'what': f'{metric} vs {entry["rival"]}, {entry["score"]} '
                                      f'T={entry["temperature"]:g}',
                              'holds': entry[metric]['beats']})
    miou = {row['variant']: row['miou'] for row in rows}
    parts.append({'what': f'mIoU within {100 * MIOU_ALLOWANCE:g} points of {baseline}',
                  'holds': miou[method] >= miou[baseline] - MIOU_ALLOWANCE})
    return {'parts': parts, 'met': all(part['holds'] for part in parts)}


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Both kinds of arm go to one list so that the table keeps the command line's order.
    parser.add_argument('--arm', dest='arms', action='append', default=[],
                        type=lambda text: (read_arm, text), metavar='NAME=DIR[,DIR...]',
                        help='an arm and its run directories (give one --arm per arm)')
    parser.add_argument('--recorded', dest='arms', action='append',
                        type=lambda text: (read_recorded, text), metavar='NAME=FILE.json',
                        help='an arm as recorded in the --json of an earlier compare_runs')
    parser.add_argument('--method', default='rnvp', help='the arm compared with the others')
    parser.add_argument('--baseline', default='none', help='the arm mIoU is held against')
    parser.add_argument('--evaluation', default='held.json',
                        help='the train.evaluate JSON in each run directory')
    parser.add_argument('--json', help='write the table, comparisons and runs here')
    return parser.parse_args(argv)


def compare(args):
    """Read, check and compare the arms; return the JSON payload."""
    if not args.arms:
        raise ValueError('give the arms with --arm NAME=DIR[,DIR...] or --recorded NAME=FILE')
    arms = {}
    for read, text in args.arms:
        name, runs = read(text, args.evaluation)
        if name in arms:
            raise ValueError(f'arm {name} given twice')
        arms[name] = runs
    for role, name in (('method', args.method), ('baseline', args.baseline)):
        if name not in arms:
            raise ValueError(f'--{role} {name} is not one of the arms {sorted(arms)}')
    seeds = check_arms(arms)
    results = {name: {run['seed']: run for run in runs} for name, runs in arms.items()}
    rows = summarise(results, list(arms), seeds)
    rivals = [name for name in arms if name != args.method]
    compared = comparisons(results, seeds, method=args.method, others=rivals)
    return {'seeds': seeds, 'evaluation': args.evaluation,
            'arms_differ_in': differing_keys([without_seed(runs[0]['config'])
                                              for runs in arms.values()]),
            'rows': rows, 'comparisons': compared,
            'target': verdict(compared, rows, method=args.method, baseline=args.baseline),
            'runs': {name: {str(run['seed']): run for run in runs}
                     for name, runs in arms.items()}}


def main(argv=None):
    """Entry point: print the table, comparisons and target; 2 on bad input."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        payload = compare(args)
    except (CheckpointError, ValueError) as error:
        print(f'train.compare_runs: {error}', file=sys.stderr)
        return 2
    print(format_summary(payload['rows']))
    print(f'arms differ in: {", ".join(payload["arms_differ_in"]) or "nothing"}')
    for entry in payload['comparisons']:
        print(format_comparison(entry))
    for part in payload['target']['parts']:
        print(f'{"holds" if part["holds"] else "fails"}: {part["what"]}')
    print(f'target {"met" if payload["target"]["met"] else "not met"}')
    if args.json:
        write_json(args.json, payload)
    return 0


if __name__ == '__main__':
    sys.exit(main())
