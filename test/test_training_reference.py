"""Training is pinned: 6 iterations of each task give the weights recorded before a refactor.

The reference (test/data/training_reference.json) holds a digest of every tensor of the
exported model.pt and the validation figures of the run, recorded with one CPU thread at
the commit named in it. A refactor of train/ must leave them bit-identical; a change of the
numerics must re-record them, in a commit of its own that says why:

    python test/test_training_reference.py --record
"""

import csv
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pytest
import torch
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = ROOT / 'test' / 'data' / 'training_reference.json'
ITERATIONS = 6
VALIDATION_COLUMNS = ('val_miou', 'val_pixel_accuracy', 'val_ap', 'val_fpr95', 'val_auroc',
                      'val_accuracy', 'val_msp')


def tensor_digest(tensor):
    """Return a short digest of a tensor's dtype, shape and bytes."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f'{data.dtype}{tuple(data.shape)}'.encode())
    digest.update(data.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def checkpoint_digests(path):
    """Return {'state_dict': {key: digest}, 'flow_state_dict': {...}} of an exported model."""
    from dense_ood_ros.checkpoint import read_payload

    payload = read_payload(path)
    return {part: {key: tensor_digest(value) for key, value in sorted(payload[part].items())}
            for part in ('state_dict', 'flow_state_dict') if payload.get(part) is not None}


def validation_figures(run_dir):
    """Return the last row's validation columns of a run's scalars.csv."""
    with open(os.path.join(run_dir, 'scalars.csv'), newline='', encoding='utf-8') as stream:
        rows = [row for row in csv.DictReader(stream)
                if any(row.get(column) for column in VALIDATION_COLUMNS)]
    return {column: float(rows[-1][column]) for column in VALIDATION_COLUMNS
            if rows[-1].get(column) not in (None, '')}


def train(config_path, out_dir, *overrides):
    """Run python -m train.joint for ITERATIONS iterations on one thread; fail on an error."""
    command = [sys.executable, '-m', 'train.joint', '--config', str(config_path),
               '--out', str(out_dir), '--set', f'optim.iterations={ITERATIONS}',
               '--set', 'log.tensorboard=false', '--set', 'log.sample_interval=0',
               '--set', 'device=cpu']
    for override in overrides:
        command += ['--set', override]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    return {'weights': checkpoint_digests(os.path.join(out_dir, 'model.pt')),
            'validation': validation_figures(out_dir)}


def dense_run(work):
    """The dense task: config/train_demo.yaml as it ships."""
    return train(ROOT / 'config' / 'train_demo.yaml', work / 'dense')


def classify_run(work):
    """The classify task on test_train_classify's fixture: fake CIFAR-10, a 4-channel flow."""
    sys.path.insert(0, str(ROOT / 'test'))
    from cifar_fakes import write_cifar

    root = work / 'cifar'
    write_cifar(root)
    raw = yaml.safe_load((ROOT / 'config' / 'train_cifar10.yaml').read_text())
    raw['data'].update({'root': str(root), 'num_workers': 0})
    raw['validation'].update({'root': str(root), 'interval': 0, 'max_images': 8})
    raw['flow'].update({'mid_channels': 4, 'num_blocks': 1})
    raw['optim'].update({'batch_size': 4})
    raw['log'].update({'interval': 1, 'checkpoint_interval': 0})
    config_path = work / 'classify.yaml'
    config_path.write_text(yaml.safe_dump(raw))
    return train(config_path, work / 'classify')


RUNS = {'dense': dense_run, 'classify': classify_run}


def _assert_same(name, run, reference):
    expected = reference[name]
    for part, digests in expected['weights'].items():
        got = run['weights'].get(part, {})
        changed = sorted(key for key in digests if got.get(key) != digests[key])
        assert not changed and set(got) == set(digests), (
            f'{name}: {part} differs from the reference recorded at '
            f'{reference["commit"]} in {len(changed)} tensors, e.g. {changed[:3]}; '
            f'extra or missing keys: {sorted(set(got) ^ set(digests))[:3]}')
    assert set(run['weights']) == set(expected['weights'])
    # The same weights must give the same figures; the evaluator may sum in another order.
    assert run['validation'].keys() == expected['validation'].keys()
    for column, value in expected['validation'].items():
        assert run['validation'][column] == pytest.approx(value, rel=1e-5, abs=1e-9), column


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RUNS))
def test_six_iterations_give_the_recorded_weights(name, tmp_path):
    reference = json.loads(REFERENCE.read_text())
    _assert_same(name, RUNS[name](tmp_path), reference)


def record():
    """Write the reference from this checkout's HEAD."""
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    reference = {'commit': commit, 'iterations': ITERATIONS}
    with tempfile.TemporaryDirectory() as work:
        for name, run in RUNS.items():
            reference[name] = run(pathlib.Path(work))
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + '\n')
    print(f'wrote {REFERENCE} at {commit}')


if __name__ == '__main__':
    if sys.argv[1:] != ['--record']:
        sys.exit(__doc__)
    sys.path.insert(0, str(ROOT))
    record()
