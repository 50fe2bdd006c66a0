"""python -m train.evaluate --task classify: Table 1 of the paper for CIFAR-10 classifiers.

For a checkpoint of ``task: classify`` (and optionally a ``--baseline`` one, the same
training with ``outliers.mode: none``), scores every CIFAR-10 test image and every image of
each outlier set with the max-softmax probability and prints, per outlier set, TNR at TPR
95 %, AUROC and detection accuracy (dense_ood_ros.metrics.open_set_metrics: in-distribution
positive, higher score = more in-distribution), plus the CIFAR-10 test accuracy.
"""

import argparse
import os
import sys

import numpy as np
import torch

from dense_ood_ros.atomic_file import write_json
from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint, load_weights_strictly
from dense_ood_ros.devices import resolve_device
from dense_ood_ros.evaluation import ClassifyEvaluator
from dense_ood_ros.evaluation_loop import evaluation_mode
from dense_ood_ros.normalization import Normalizer
from train.vgg import ARCH, vgg13_bn

METRICS = ('tnr_at_tpr95', 'auroc', 'detection_accuracy')
HEADERS = ('TNR at TPR 95%', 'AUROC', 'OOD det. acc.')
CONVENTIONS = (
    'score: max softmax probability at T=1; positives: CIFAR-10 test images; '
    'tnr_at_tpr95 = 1 - FPR at the first threshold (high to low) with TPR >= 0.95; '
    'detection_accuracy = max over d of 0.5 P_in(score >= d) + 0.5 P_out(score < d)')


def load_classifier(path, *, device='cpu'):
    """Return (VGG-13 in eval mode on `device`, Checkpoint) of a 'vgg13_bn' checkpoint."""
    ckpt = load_checkpoint(path, expected_arch=ARCH)
    model = load_weights_strictly(vgg13_bn(ckpt.num_classes), ckpt.state_dict, path,
                                  f'weights do not fit {ARCH} with {ckpt.num_classes} classes')
    return model.to(device).eval(), ckpt


@torch.no_grad()
def predict(model, images, *, mean, std, device='cpu', batch_size=256):
    """Return (max softmax (N,) float32, predicted class (N,) int64) of uint8 NHWC RGB images.

    The model runs in eval mode (BN running statistics) and gets its own mode back after,
    so a trainer validating mid-run goes on training.
    """
    normalize = Normalizer(mean, std, device=device)
    scores, classes = [], []
    with evaluation_mode(model):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
            batch = batch.to(device).permute(0, 3, 1, 2).float().div_(255.0)
            probs = torch.softmax(model(normalize(batch)).float(), dim=1)
            top, label = probs.max(dim=1)
            scores.append(top.cpu().numpy())
            classes.append(label.cpu().numpy())
    if not scores:
        return np.empty(0, np.float32), np.empty(0, np.int64)
    return np.concatenate(scores), np.concatenate(classes).astype(np.int64)


def evaluate_model(model, ckpt, in_images, in_labels, ood_sets, *, device='cpu',
                   batch_size=256):
    """Return {'accuracy', 'ood': {name: open_set_metrics}} of one classifier."""
    kwargs = {'mean': ckpt.mean, 'std': ckpt.std, 'device': device, 'batch_size': batch_size}
    evaluator = ClassifyEvaluator()
    evaluator.process(*predict(model, in_images, **kwargs), in_labels)
    for name, images in ood_sets.items():
        evaluator.process(*predict(model, images, **kwargs), outlier_set=name)
    result = evaluator.evaluate()
    return {'accuracy': result['accuracy'], 'ood': result['ood']}


def format_table(models):
    """Return Table 1's layout: one row per outlier set, cells 'model a / model b' in %."""
    names = ' / '.join(model['name'] for model in models)
    header = f'{"OOD dataset":<24}' + ''.join(f' {title:>20}' for title in HEADERS)
    lines = [f'max-softmax score; cells: {names}', header, '-' * len(header)]
    for outlier_set in models[0]['ood']:
        cells = [' / '.join(f'{100 * model["ood"][outlier_set][key]:.1f}' for model in models)
                 for key in METRICS]
        lines.append(f'{outlier_set:<24}' + ''.join(f' {cell:>20}' for cell in cells))
    accuracy = ' / '.join(f'{100 * model["accuracy"]:.2f}' for model in models)
    lines.append(f'CIFAR-10 test accuracy (%): {accuracy}')
    return '\n'.join(lines)


def parse_ood(items):
    """Return {name: path} from NAME=PATH strings, refusing malformed or repeated names."""
    sets = {}
    for item in items:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise ValueError(f'--ood {item!r}: expected NAME=PATH, e.g. svhn=datasets/svhn')
        if name in sets:
            raise ValueError(f'--ood names {name!r} twice')
        sets[name] = path
    return sets


def parse_args(argv):
    """Parse the command line (everything but --task)."""
    parser = argparse.ArgumentParser(prog='python -m train.evaluate --task classify',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint', required=True, help='a task: classify model.pt')
    parser.add_argument('--baseline', help='a second checkpoint (outliers.mode none) whose '
                        'cells come first, as the max-softmax baseline of Table 1')
    parser.add_argument('--in-root', required=True,
                        help='CIFAR-10 python release (holds cifar-10-batches-py/test_batch)')
    parser.add_argument('--ood', nargs='+', required=True, metavar='NAME=PATH',
                        help='outlier sets: svhn=DIR (test_32x32.mat) and image folders, e.g. '
                             'lsun_resize=DIR tinyimagenet_resize=DIR')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--limit', type=int, help='use the first N images of every set only')
    parser.add_argument('--json', help='write the results here')
    return parser.parse_args(argv)


def main(argv):
    """Run the classify evaluation; return the exit status (2 on bad input)."""
    from train.data.cifar import Cifar10
    from train.data.ood_images import read_ood_set

    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        paths = {'baseline': args.baseline, 'model': args.checkpoint}
        loaded = {name: load_classifier(path, device=device)
                  for name, path in paths.items() if path is not None}
        in_set = Cifar10(args.in_root, 'test', limit=args.limit)
        ood_paths = parse_ood(args.ood)
        ood_sets = {name: read_ood_set(name, path, limit=args.limit)
                    for name, path in ood_paths.items()}
    except (CheckpointError, OSError, ValueError, ImportError, RuntimeError) as error:
        print(f'train.evaluate: {error}', file=sys.stderr)
        return 2
    models = []
    for name, (model, ckpt) in loaded.items():
        result = evaluate_model(model, ckpt, in_set.images, in_set.labels, ood_sets,
                                device=device, batch_size=args.batch_size)
        mode = ckpt.train.get('config', {}).get('outliers', {}).get('mode')
        models.append({'name': name, 'checkpoint': os.path.abspath(paths[name]),
                       'outlier_mode': mode, **result})
    print(format_table(models))
    if args.json:
        write_json(args.json, {
            'task': 'classify', 'score': 'msp', 'conventions': CONVENTIONS,
            'in_distribution': {'dataset': 'cifar10', 'split': 'test',
                                'root': os.path.abspath(args.in_root),
                                'images': len(in_set)},
            'outliers': {name: {'path': os.path.abspath(path), 'images': len(ood_sets[name])}
                         for name, path in ood_paths.items()},
            'models': models})
    return 0
