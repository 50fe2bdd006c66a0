r"""The paper's Table 3 in miniature over seeds: LDN-121 with outliers none / noise / rnvp.

Usage, from the repository root::

    python benchmarks/reproduce_table3.py                      # synthetic world, 2 CPU jobs
    python benchmarks/reproduce_table3.py --seeds 0 1 2 --jobs 2 --iterations 1000
    python benchmarks/reproduce_table3.py --device cuda --jobs 1 \\
        --config config/train_cityscapes.yaml \\
        --eval-dataset fishyscapes_lf --eval-root datasets/fishyscapes_lf

Each run (variant x seed) is trained by ``python -m train.joint`` in its own process from the
same config, data and iteration budget; only the variant's outlier settings and the seed
differ. The variants are ``none`` (MSP baseline), ``noise`` (Gaussian-noise patches), ``rnvp``
(the method, ``outliers.flow_signal: pasted``) and ``rnvp_full`` (the flow hears all of Eq. 4,
``flow_signal: full``). ``--jobs`` runs go side by side, each on one CPU thread: two one-thread
runs beat one two-thread run on this machine. Each run is then evaluated by ``train.evaluate``
on the test split, whose anomalies never occur in training, with the paper's four score
settings (MSP T=1, entropy T=1, MSP T=10, entropy T=2); the table gives mean +- sample std over
seeds and the JSON every seed's values.

A run directory remembers what made it (``reproduce.json``: config file and its hash, the
overrides, iterations, seed and the commit of the training code). A finished run is reused
and an interrupted one resumes from its ``resume.pt`` only when all of that matches; any
difference is refused with a message that names it, so a table never mixes code or configs.
The training code must be committed (its commit is the provenance).
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dense_ood_ros.atomic_file import write_json  # noqa: E402
from dense_ood_ros.checkpoint import load_checkpoint  # noqa: E402
from dense_ood_ros.pipeline import DenseOODPipeline  # noqa: E402
from train.build import synthetic_world  # noqa: E402
from train.config import load_config  # noqa: E402
from train.data.registry import build_dataset, known_names  # noqa: E402
from train.evaluate import evaluate  # noqa: E402
from train.seed_table import (comparisons, format_comparison, format_summary,  # noqa: E402
                              SETTINGS, summarise)
from train.state import MODEL_FILE, RESUME_FILE  # noqa: E402

# Variant -> the config overrides that make it; everything else is the config's.
VARIANTS = {
    'none': ['outliers.mode=none'],
    'noise': ['outliers.mode=noise'],
    'rnvp': ['outliers.mode=rnvp', 'outliers.flow_signal=pasted'],
    'rnvp_full': ['outliers.mode=rnvp', 'outliers.flow_signal=full'],
}
MODEL_NAMES = {'none': 'LDN', 'noise': 'LDN + noise', 'rnvp': 'LDN + RNVP (KL on samples)',
               'rnvp_full': 'LDN + RNVP (full Eq. 4)'}
# The method's variants, each compared with both baselines.
METHODS = ('rnvp', 'rnvp_full')
DEFAULT_CONFIG = 'config/train_demo.yaml'
DEFAULT_ITERATIONS = 500
DEFAULT_JSON = os.path.join('benchmarks', 'results', 'table3_synthetic.json')
PROVENANCE_FILE = 'reproduce.json'
RESULT_FILE = 'evaluation.json'
# What a run's outcome depends on: a commit that touches none of these trains the same.
TRAINING_CODE = ('train', 'dense_ood_ros/models', 'dense_ood_ros/checkpoint.py',
                 'dense_ood_ros/pipeline.py', 'dense_ood_ros/scores.py',
                 'dense_ood_ros/metrics.py', 'dense_ood_ros/labels.py', 'config')


class ProvenanceError(RuntimeError):
    """A run directory was made by another config, budget, seed or code."""


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='training config')
    parser.add_argument('--iterations', type=int,
                        help=f'iterations per run (default {DEFAULT_ITERATIONS} with the demo '
                             "config, otherwise the config's own)")
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--variants', nargs='+', choices=sorted(VARIANTS),
                        default=list(VARIANTS))
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs trained side by side, one CPU thread each (default 2)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--out', default=os.path.join('runs', 'table3'),
                        help='where each run trains (OUT/<variant>/seed<k>)')
    parser.add_argument('--test-images', type=int, default=100,
                        help='synthetic test scenes (ignored with --eval-root)')
    parser.add_argument('--eval-dataset', choices=sorted(known_names()), default='synthetic',
                        help='test set; anything but synthetic needs --eval-root')
    parser.add_argument('--eval-root', help='test set root on disk')
    parser.add_argument('--json', default=DEFAULT_JSON, help='where to write the results')
    parser.add_argument('--evaluate-run', metavar='DIR', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.eval_dataset != 'synthetic' and not args.eval_root:
        parser.error(f'--eval-dataset {args.eval_dataset} needs --eval-root')
    if args.jobs < 1:
        parser.error('--jobs must be at least 1')
    if args.iterations is None and os.path.normpath(args.config) == DEFAULT_CONFIG:
        args.iterations = DEFAULT_ITERATIONS
    return args


def code_commit():
    """Return the last commit that changed the training code; refuse uncommitted changes."""
    def git(*command):
        return subprocess.run(['git', *command], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    dirty = git('status', '--porcelain', '--', *TRAINING_CODE)
    if dirty:
        raise ProvenanceError('the training code has uncommitted changes; commit them first '
                              f"(the commit is the runs' provenance):\n{dirty}")
    return git('log', '-1', '--format=%H', '--', *TRAINING_CODE)


def overrides(args, variant, seed):
    """Return the --set overrides of one run."""
    sets = [*VARIANTS[variant], f'seed={seed}', f'device={args.device}',
            # Validation happens here, on the same test set for every run.
            'validation.dataset=null']
    if args.iterations is not None:
        sets.append(f'optim.iterations={args.iterations}')
    return sets


def provenance(args, variant, seed, commit):
    """Return what makes a run: config file and hash, overrides, iterations, seed, code."""
    with open(os.path.join(ROOT, args.config), 'rb') as stream:
        config_hash = hashlib.sha256(stream.read()).hexdigest()
    sets = overrides(args, variant, seed)
    config = load_config(os.path.join(ROOT, args.config), overrides=sets)
    return {'config': args.config, 'config_sha256': config_hash,
            'overrides': sets,
            'iterations': config['optim']['iterations'], 'seed': seed, 'commit': commit}


def check_run_dir(out_dir, wanted):
    """Write the run's provenance into a new directory, or refuse one made otherwise."""
    path = os.path.join(out_dir, PROVENANCE_FILE)
    if os.path.exists(path):
        with open(path, encoding='utf-8') as stream:
            found = json.load(stream)
        differences = [key for key in wanted if found.get(key) != wanted[key]]
        if differences:
            details = '; '.join(f'{key}: {found.get(key)!r} there, {wanted[key]!r} now'
                                for key in differences)
            raise ProvenanceError(f'{out_dir} was made by another run ({details}); remove it '
                                  'or choose another --out')
        return
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ProvenanceError(f'{out_dir} holds files but no {PROVENANCE_FILE}; remove it or '
                              'choose another --out')
    os.makedirs(out_dir, exist_ok=True)
    write_json(path, wanted)


def run_one(args, variant, seed, commit):
    """Train (or resume, or reuse) one run, then evaluate it in its own process."""
    out_dir = os.path.join(args.out, variant, f'seed{seed}')
    check_run_dir(out_dir, provenance(args, variant, seed, commit))
    tag = f'[{variant} seed {seed}]'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    seconds = None
    if not os.path.exists(os.path.join(out_dir, MODEL_FILE)):
        command = [sys.executable, '-m', 'train.joint', '--config', args.config,
                   '--out', out_dir]
        for item in overrides(args, variant, seed):
            command += ['--set', item]
        if os.path.exists(os.path.join(out_dir, RESUME_FILE)):
            command.append('--resume')
        print(f'{tag} {" ".join(command)}', flush=True)
        start = time.perf_counter()
        with open(os.path.join(out_dir, 'train.log'), 'a', encoding='utf-8') as log:
            subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=log,
                           stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - start
        print(f'{tag} trained in {seconds / 60:.1f} min', flush=True)
    result = os.path.join(out_dir, RESULT_FILE)
    if not os.path.exists(result):
        command = [sys.executable, os.path.abspath(__file__), '--evaluate-run', out_dir,
                   '--device', args.device, '--test-images', str(args.test_images),
                   '--eval-dataset', args.eval_dataset, '--config', args.config]
        if args.eval_root:
            command += ['--eval-root', args.eval_root]
        subprocess.run(command, cwd=ROOT, env=env, check=True)
    with open(result, encoding='utf-8') as stream:
        evaluation = json.load(stream)
    if seconds is not None:
        # Kept with the run, so a later aggregation that reuses it still reports the time.
        evaluation['train_seconds'] = seconds
        write_json(result, evaluation)
    return evaluation


def test_samples(args, config):
    """Return the test set: the synthetic world's test split, or a dataset on disk."""
    if args.eval_root:
        return build_dataset(args.eval_dataset, args.eval_root)
    # The training world's scene size and seed; its test split is the only one with anomalies.
    return synthetic_world(config['data'], split='test', num_images=args.test_images,
                           cache=False)


def evaluate_run(args):
    """Evaluate one run's model.pt with the four settings; write OUT/evaluation.json."""
    config = load_config(os.path.join(ROOT, args.config))
    samples = test_samples(args, config)
    model = os.path.join(args.evaluate_run, MODEL_FILE)
    pipeline = DenseOODPipeline.from_checkpoint(load_checkpoint(model), device=args.device)
    evaluation = evaluate(pipeline, samples, SETTINGS, progress=False)
    write_json(os.path.join(args.evaluate_run, RESULT_FILE),
               {'checkpoint': model, 'rows': evaluation.rows, 'images': evaluation.images,
                'anomaly_pixel_share': anomaly_share(samples)})
    return 0


def main(argv=None):
    """Train every run (jobs side by side), evaluate, print the table, write the JSON."""
    args = parse_args(argv)
    if args.evaluate_run:
        return evaluate_run(args)
    try:
        commit = code_commit()
        # Refuse a mismatched directory before anything starts training.
        for variant in args.variants:
            for seed in args.seeds:
                out_dir = os.path.join(args.out, variant, f'seed{seed}')
                if os.path.exists(os.path.join(out_dir, PROVENANCE_FILE)):
                    check_run_dir(out_dir, provenance(args, variant, seed, commit))
    except ProvenanceError as error:
        print(f'reproduce_table3: error: {error}', file=sys.stderr)
        return 1
    config = load_config(os.path.join(ROOT, args.config))
    started = time.perf_counter()
    results = {variant: {} for variant in args.variants}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # Seed-major order: a stopped reproduction has whole seeds, not whole variants.
        futures = {pool.submit(run_one, args, variant, seed, commit): (variant, seed)
                   for seed in args.seeds for variant in args.variants}
        for future in concurrent.futures.as_completed(futures):
            variant, seed = futures[future]
            results[variant][seed] = future.result()
    rows = summarise(results, args.variants, args.seeds, names=MODEL_NAMES)
    print(format_summary(rows))
    compared = [entry for method in METHODS
                for entry in comparisons(results, args.seeds, method=method)]
    for entry in compared:
        print(format_comparison(entry))
    first = results[args.variants[0]][args.seeds[0]]
    payload = {
        'config': args.config, 'config_values': config, 'commit': commit,
        'lambda': config['outliers']['lambda'],
        'flow': {key: config['flow'][key] for key in ('num_scales', 'mid_channels',
                                                      'num_blocks')},
        'iterations': args.iterations or config['optim']['iterations'], 'seeds': args.seeds,
        'variants': {v: VARIANTS[v] for v in args.variants}, 'device': args.device,
        'jobs': args.jobs, 'eval_dataset': args.eval_dataset, 'test_images': first['images'],
        'anomaly_pixel_share': first['anomaly_pixel_share'],
        'total_seconds': time.perf_counter() - started, 'rows': rows,
        'comparisons': compared,
        'runs': {v: {str(s): results[v][s] for s in args.seeds} for v in args.variants}}
    write_json(os.path.join(ROOT, args.json) if not os.path.isabs(args.json) else args.json,
               payload)
    print(f'wrote {args.json}')
    return 0


def anomaly_share(samples):
    """Return outlier pixels / labelled pixels of the test set: the AP of a random scorer."""
    outliers = labelled = 0
    for index in range(len(samples)):
        ood = samples[index].ood
        if ood is not None:
            outliers += int((ood == 1).sum())
            labelled += int((ood <= 1).sum())
    return outliers / labelled if labelled else None


if __name__ == '__main__':
    sys.exit(main())
