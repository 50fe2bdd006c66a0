"""What a run keeps on disk: the resume file (everything) and the node's checkpoint (export).

The resume file is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(weights_only=True)`` like every other checkpoint in this package; random
generator states are stored as tensors and lists for that reason.
"""

import os
import random
import subprocess
import warnings

import numpy as np
import torch

from dense_ood_ros.checkpoint import (
    Checkpoint, CheckpointError, read_payload, save_atomically, save_checkpoint)
from dense_ood_ros.labels import IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.scores import DEFAULT_TEMPERATURES

RESUME_FORMAT = 'dense_ood_ros.train_state'
RESUME_VERSION = 1
RESUME_FILE = 'resume.pt'
MODEL_FILE = 'model.pt'


def rng_states():
    """Return the global generators' states (python, numpy, torch, cuda) as plain data."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        'python': {'version': version, 'state': list(internal), 'gauss': gauss},
        'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': pos,
                  'has_gauss': has_gauss, 'cached_gaussian': cached},
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states):
    """Set the global generators from rng_states()'s output."""
    python = states['python']
    random.setstate((python['version'], tuple(python['state']), python['gauss']))
    numpy = states['numpy']
    np.random.set_state((numpy['kind'], numpy['keys'].numpy().astype(np.uint32), numpy['pos'],
                         numpy['has_gauss'], numpy['cached_gaussian']))
    torch.set_rng_state(states['torch'])
    restore_cuda_rng_states(states['cuda'])


def restore_cuda_rng_states(saved):
    """Restore the CUDA generators this machine has; warn about the GPUs it lacks.

    The file holds one state per GPU the saving process saw, and a resume may run where
    there are fewer (or none); torch.cuda.set_rng_state_all would then fail. Losing those
    states does not change what training draws: the data order and every draw of a step
    come from generators derived from (seed, iteration) (train.loader, train.step).
    Return the indices of the saved states that could not be restored.
    """
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, rng_state in enumerate(saved[:count]):
        torch.cuda.set_rng_state(rng_state, device=index)
    missing = list(range(count, len(saved)))
    if missing:
        warnings.warn(f'resume: the CUDA RNG states of GPU {", ".join(map(str, missing))} '
                      f'were not restored: this machine has {count} GPU(s) and the saving '
                      f'run had {len(saved)}', stacklevel=2)
    return missing


def cpu_state_dict(module):
    """Return a module's state dict with every tensor detached and on the CPU."""
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def save_resume(path, payload):
    """Write a resume payload atomically (a crash never leaves a half-written file)."""
    save_atomically({'format': RESUME_FORMAT, 'format_version': RESUME_VERSION, **payload},
                    path)


def load_resume(path):
    """Read a resume file written by save_resume; raise CheckpointError if it is not one."""
    payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get('format') != RESUME_FORMAT:
        raise CheckpointError(path, f'not a {RESUME_FORMAT} file; --resume needs the '
                              f'{RESUME_FILE} a training run wrote')
    if payload.get('format_version') != RESUME_VERSION:
        raise CheckpointError(path, f'format version {payload.get("format_version")!r} is '
                              f'not {RESUME_VERSION}')
    return payload


def git_commit():
    """Return the repository's HEAD commit, or None outside a git checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        result = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=here, capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def export_checkpoint(path, spec, *, network, flow, class_names, palette,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD, train=None):
    """Write the network (and flow) in the node's format; return the Checkpoint.

    `spec` is train.build's ExportSpec; `train` the run's provenance (config, iteration,
    git commit and the training command line), so a checkpoint says how to make it again.

    The task 'classify' writes its classifier the same way (arch 'vgg13_bn', CIFAR-10's
    `mean` and `std`); the node refuses that architecture, train.evaluate reads it.
    """
    ckpt = Checkpoint(
        arch=spec.arch, num_classes=len(class_names), state_dict=cpu_state_dict(network),
        class_names=list(class_names), palette=[list(c) for c in palette], mean=list(mean),
        std=list(std), input_short_edge=spec.input_short_edge, default_score='msp',
        temperatures=dict(DEFAULT_TEMPERATURES), threshold=spec.threshold,
        flow_state_dict=cpu_state_dict(flow) if flow is not None else None,
        flow_config=dict(spec.flow_config) if flow is not None else None, train=train)
    save_checkpoint(path, ckpt)
    return ckpt
