"""What every model file must say about itself, checked without torch.

Shared by the PyTorch checkpoints (dense_ood_ros.checkpoint) and the exported ONNX models
(dense_ood_ros.onnx_pipeline): class names, palette, normalisation, input size, scores,
temperatures and threshold.
"""

import math
import os

from dense_ood_ros.scores_numpy import SCORES


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, foreign or does not fit the model."""

    def __init__(self, path, reason):
        super().__init__(f'checkpoint {os.fspath(path)!s}: {reason}')
        self.path = os.fspath(path)
        self.reason = reason


def metadata_problems(ckpt):
    """Return what is wrong with a model's metadata (a list of sentences; empty: nothing).

    `ckpt` is anything with the Checkpoint's metadata attributes: a Checkpoint, or the
    metadata of an exported ONNX model.
    """
    problems = []
    if not isinstance(ckpt.num_classes, int) or ckpt.num_classes < 1:
        problems.append(f'num_classes must be a positive int, got {ckpt.num_classes!r}')
        return problems
    if len(ckpt.class_names) != ckpt.num_classes:
        problems.append(f'{len(ckpt.class_names)} class names for {ckpt.num_classes} classes')
    if len(ckpt.palette) != ckpt.num_classes or any(
            len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in ckpt.palette):
        problems.append(f'palette must hold {ckpt.num_classes} RGB triples in 0..255')
    if len(ckpt.mean) != 3 or len(ckpt.std) != 3 or not all(s > 0 for s in ckpt.std):
        problems.append('mean and std must be 3 values each, std positive')
    if not isinstance(ckpt.input_short_edge, int) or ckpt.input_short_edge < 32:
        problems.append(f'input_short_edge must be an int >= 32, got {ckpt.input_short_edge!r}')
    if ckpt.default_score not in SCORES:
        problems.append(f'default_score {ckpt.default_score!r} is not one of {SCORES}')
    if set(ckpt.temperatures) != set(SCORES) or not all(
            t > 0 for t in ckpt.temperatures.values()):
        problems.append(f'temperatures must give a positive value for each of {SCORES}')
    if not isinstance(ckpt.threshold, (int, float)) or not math.isfinite(ckpt.threshold):
        problems.append(f'threshold must be a finite number, got {ckpt.threshold!r}')
    if (getattr(ckpt, 'flow_state_dict', None) is None) != (
            getattr(ckpt, 'flow_config', None) is None):
        problems.append('flow_state_dict and flow_config must be given together')
    return problems
