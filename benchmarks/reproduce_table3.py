r"""The paper's Table 3 in miniature: LDN-121 trained with outliers none / noise / rnvp.

Usage, from the repository root::

    python benchmarks/reproduce_table3.py                      # synthetic world, CPU
    python benchmarks/reproduce_table3.py --device cuda \\
        --config config/train_cityscapes.yaml \\
        --eval-dataset fishyscapes_lf --eval-root datasets/fishyscapes_lf

Each mode is trained by ``python -m train.joint`` in its own process from the same config,
seed, data and iteration budget; only ``outliers.mode`` differs. A finished mode (its
``model.pt`` exists) is not trained again, and an interrupted one resumes from its
``resume.pt``, so a stopped reproduction continues where it was. Every checkpoint is then
evaluated by ``train.evaluate`` on the test split, whose anomalies never occur in training
(the synthetic world's test split by default, or a dataset on disk), with the paper's four
score settings: MSP T=1, entropy T=1, MSP T=10, entropy T=2.

Budget on the 2-core CPU machine (at most 90 minutes for the whole script): the demo config
trains at about 1.7 it/s with RealNVP on a quiet machine and a little faster without it, so
1000 iterations per mode (10 epochs of the 400-scene world at batch 4, 2.5 times the demo's
400) take about 10 minutes each; with evaluation that is about 35 minutes, which leaves room
for a machine that is busy with other work (it halves the rate). The iteration count is an
argument; with ``--config config/train_cityscapes.yaml`` it defaults to the config's own (the
paper's 54k). Modes train in the order given (rnvp first by default: its checkpoint is the
one people look at).
"""

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dense_ood_ros.checkpoint import load_checkpoint  # noqa: E402
from dense_ood_ros.pipeline import DenseOODPipeline  # noqa: E402
from train.config import load_config  # noqa: E402
from train.data.world import SyntheticSamples  # noqa: E402
from train.evaluate import DATASETS, evaluate, format_table, write_json  # noqa: E402
from train.state import git_commit, MODEL_FILE, RESUME_FILE  # noqa: E402

MODES = ('rnvp', 'none', 'noise')
TABLE_ORDER = ('none', 'noise', 'rnvp')
MODEL_NAMES = {'none': 'LDN', 'noise': 'LDN + noise', 'rnvp': 'LDN + RNVP'}
# Table 3's rows per model, in the paper's order.
SETTINGS = [('msp', 1.0), ('entropy', 1.0), ('msp', 10.0), ('entropy', 2.0)]
DEFAULT_CONFIG = 'config/train_demo.yaml'
DEFAULT_ITERATIONS = 1000
DEFAULT_JSON = os.path.join('benchmarks', 'results', 'table3_synthetic.json')


def parse_args(argv=None):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='training config')
    parser.add_argument('--iterations', type=int,
                        help=f'iterations per mode (default {DEFAULT_ITERATIONS} with the demo '
                             "config, otherwise the config's own)")
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--modes', nargs='+', choices=MODES, default=list(MODES))
    parser.add_argument('--out', default=os.path.join('runs', 'table3'),
                        help='where each mode trains (OUT/<mode>)')
    parser.add_argument('--test-images', type=int, default=100,
                        help='synthetic test scenes (ignored with --eval-root)')
    parser.add_argument('--eval-dataset', choices=sorted(DATASETS), default='synthetic',
                        help='test set; anything but synthetic needs --eval-root')
    parser.add_argument('--eval-root', help='test set root on disk')
    parser.add_argument('--json', default=DEFAULT_JSON, help='where to write the results')
    args = parser.parse_args(argv)
    if args.eval_dataset != 'synthetic' and not args.eval_root:
        parser.error(f'--eval-dataset {args.eval_dataset} needs --eval-root')
    if args.iterations is None and os.path.normpath(args.config) == DEFAULT_CONFIG:
        args.iterations = DEFAULT_ITERATIONS
    return args


def overrides(args, mode):
    """Return the --set overrides that make one mode's run; only the mode differs."""
    sets = [f'outliers.mode={mode}', f'device={args.device}',
            # Validation happens here, on the same test set for every mode.
            'validation.dataset=null']
    if args.iterations is not None:
        sets.append(f'optim.iterations={args.iterations}')
    return sets


def train(args, mode):
    """Train one mode in its own process (resuming an interrupted run); return model.pt."""
    out_dir = os.path.join(args.out, mode)
    model = os.path.join(out_dir, MODEL_FILE)
    if os.path.exists(model):
        print(f'[{mode}] {model} exists; not training again', flush=True)
        return model, None
    command = [sys.executable, '-m', 'train.joint', '--config', args.config, '--out', out_dir]
    for item in overrides(args, mode):
        command += ['--set', item]
    if os.path.exists(os.path.join(out_dir, RESUME_FILE)):
        command.append('--resume')
    print(f'[{mode}] {" ".join(command)}', flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return model, time.perf_counter() - start


def test_samples(args, config):
    """Return the test set: the synthetic world's test split, or a dataset on disk."""
    if args.eval_root:
        from train.data.registry import build_dataset

        reader, split = DATASETS[args.eval_dataset]
        return build_dataset(reader, args.eval_root, split)
    world = config['data']['synthetic']
    return SyntheticSamples('test', num_images=args.test_images, height=world['height'],
                            width=world['width'], seed=world['seed'], cache=False)


def row_label(row):
    """Name a row as Table 3 does: model, score (MSP or H), temperature."""
    score = 'MSP' if row['score'] == 'msp' else 'H'
    return f'{row["model"]}, {score}, T={row["temperature"]:g}'


def main(argv=None):
    """Train, evaluate, print the table, write the JSON."""
    args = parse_args(argv)
    config = load_config(os.path.join(ROOT, args.config))
    samples = test_samples(args, config)
    started = time.perf_counter()
    rows, runs = [], {}
    for mode in args.modes:
        model, seconds = train(args, mode)
        pipeline = DenseOODPipeline.from_checkpoint(load_checkpoint(model),
                                                    device=args.device)
        evaluation = evaluate(pipeline, samples, SETTINGS)
        runs[mode] = {'checkpoint': model, 'train_seconds': seconds}
        rows += [{'model': MODEL_NAMES[mode], 'mode': mode, **row} for row in evaluation.rows]
    # Print in the paper's order whatever order the modes trained in.
    rows.sort(key=lambda row: TABLE_ORDER.index(row['mode']))
    table = format_table(rows, None, label=row_label)
    print(table)
    payload = {
        'config': args.config, 'seed': config['seed'],
        'iterations': args.iterations or config['optim']['iterations'],
        'commit': git_commit(), 'device': args.device, 'eval_dataset': args.eval_dataset,
        'test_images': len(samples), 'anomaly_pixel_share': _anomaly_share(samples),
        'total_seconds': time.perf_counter() - started, 'runs': runs, 'rows': rows}
    write_json(os.path.join(ROOT, args.json) if not os.path.isabs(args.json) else args.json,
               payload)
    print(f'wrote {args.json}')
    return 0


def _anomaly_share(samples):
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
