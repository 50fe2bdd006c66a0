"""The one checkpoint format shared by training, evaluation and the node.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` reads it and no pickled code can ever run on load.
"""

import dataclasses
import os
import pickle

import torch

from dense_ood_ros.atomic_file import atomic_open
from dense_ood_ros.labels import IMAGENET_MEAN, IMAGENET_STD
# Torch-free, shared with the ONNX models' metadata; CheckpointError re-exported from here.
from dense_ood_ros.model_metadata import CheckpointError, metadata_problems
from dense_ood_ros.scores import DEFAULT_TEMPERATURES

FORMAT_NAME = 'dense_ood_ros.checkpoint'
FORMAT_VERSION = 1


@dataclasses.dataclass
class Checkpoint:
    """A segmenter's weights plus everything needed to run and interpret it.

    `threshold` applies to `default_score` at `temperatures[default_score]`.
    `flow_config` holds RealNVP's constructor arguments when `flow_state_dict` is set.
    `train` holds the resolved training config, iteration and git commit when known.
    """

    arch: str
    num_classes: int
    state_dict: dict
    class_names: list
    palette: list
    mean: list = dataclasses.field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list = dataclasses.field(default_factory=lambda: list(IMAGENET_STD))
    input_short_edge: int = 512
    default_score: str = 'msp'
    temperatures: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_TEMPERATURES))
    threshold: float = 0.5
    flow_state_dict: dict = None
    flow_config: dict = None
    train: dict = dataclasses.field(default_factory=dict)

    def validate(self, path='<memory>'):
        """Raise CheckpointError (naming `path`) if the metadata is inconsistent."""
        problems = metadata_problems(self)
        if problems:
            raise CheckpointError(path, 'invalid metadata: ' + '; '.join(problems))
        return self

    def to_dict(self):
        """Return the dict that is written to disk."""
        payload = dataclasses.asdict(self)
        payload['format'] = FORMAT_NAME
        payload['format_version'] = FORMAT_VERSION
        return payload


def save_checkpoint(path, ckpt):
    """Write `ckpt` to `path` atomically: a crash never leaves a truncated file behind."""
    ckpt.validate(path)
    save_atomically(ckpt.to_dict(), path)


def save_atomically(payload, path):
    """torch.save `payload` to a temporary file beside `path`, then rename it into place."""
    with atomic_open(path, 'wb') as stream:
        torch.save(payload, stream)


def read_payload(path):
    """Load a torch file with weights_only=True, turning every failure into CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(path, 'no such file')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses anything but tensors and plain containers: code never runs.
        raise CheckpointError(
            path, f'refused to unpickle it (contains objects other than weights): {error}'
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(path, f'not a readable torch file ({error})') from None


def load_checkpoint(path, *, expected_arch=None, expected_num_classes=None):
    """Read and validate a checkpoint written by save_checkpoint."""
    payload = read_payload(path)
    if not isinstance(payload, dict) or payload.get('format') != FORMAT_NAME:
        raise CheckpointError(path, f'not a {FORMAT_NAME} file (no matching "format" key)')
    if payload.get('format_version') != FORMAT_VERSION:
        raise CheckpointError(
            path, f'format version {payload.get("format_version")!r} is not {FORMAT_VERSION}')
    fields = {f.name for f in dataclasses.fields(Checkpoint)}
    missing = sorted(f for f in ('arch', 'num_classes', 'state_dict', 'class_names', 'palette')
                     if f not in payload)
    if missing:
        raise CheckpointError(path, f'missing entries {missing}')
    ckpt = Checkpoint(**{k: v for k, v in payload.items() if k in fields})
    ckpt.validate(path)
    if expected_arch is not None and ckpt.arch != expected_arch:
        raise CheckpointError(path, f'architecture {ckpt.arch!r}, expected {expected_arch!r}')
    if expected_num_classes is not None and ckpt.num_classes != expected_num_classes:
        raise CheckpointError(
            path, f'{ckpt.num_classes} classes, expected {expected_num_classes}')
    return ckpt


def load_weights_strictly(module, state_dict, path, what):
    """Load every tensor of `state_dict` into `module`, or raise CheckpointError naming `path`.

    `what` says what did not fit; the first lines of torch's report (missing, unexpected
    and mismatched keys) follow it.
    """
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first_lines = ' '.join(str(error).split('\n')[:3])
        raise CheckpointError(path, f'{what}: {first_lines}') from None
    return module


def build_model_from_checkpoint(ckpt, path='<memory>'):
    """Instantiate the segmenter a checkpoint describes and load its weights (strictly)."""
    from dense_ood_ros.models import build_segmenter

    try:
        model = build_segmenter(ckpt.arch, ckpt.num_classes)
    except ValueError as error:
        raise CheckpointError(path, str(error)) from None
    # Shape mismatches here usually mean a class count or architecture change.
    return load_weights_strictly(model, ckpt.state_dict, path,
                                 f'weights do not fit {ckpt.arch} with {ckpt.num_classes} '
                                 'classes')


def build_flow_from_checkpoint(ckpt, path='<memory>'):
    """Instantiate the RealNVP stored beside the segmenter, or raise if there is none."""
    from dense_ood_ros.models import RealNVP

    if ckpt.flow_state_dict is None:
        raise CheckpointError(path, 'holds no RealNVP flow weights')
    return load_weights_strictly(RealNVP(**ckpt.flow_config), ckpt.flow_state_dict, path,
                                 f'flow weights do not fit {ckpt.flow_config}')
