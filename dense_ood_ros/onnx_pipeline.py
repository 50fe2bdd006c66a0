"""The pipeline on an exported ONNX model, through ONNX Runtime: no torch anywhere.

An exported model (``python -m dense_ood_ros.tools.export_onnx``) takes raw RGB frames as
float32 NCHW in 0..255 (the normalisation is inside the graph) and gives the logits at the
network's resolution. Everything the node reads from a ``.pt`` checkpoint travels as JSON in
the model's metadata under ``dense_ood_ros``. Pre- and post-processing here are the PyTorch
pipeline's, in numpy and OpenCV: resize to the short edge, pad to a multiple of 32 with the
mean colour, crop, upsample the logits bilinearly to the frame, then argmax and score.
"""

import dataclasses
import json
import os

import cv2
import numpy as np

from dense_ood_ros.model_metadata import CheckpointError, metadata_problems
from dense_ood_ros.pipeline_common import (check_rgb, network_size, PipelineSettings,
                                           resize_labels, resize_score, resolve_settings,
                                           STRIDE, UPSAMPLE_MODES)
from dense_ood_ros.scores_numpy import anomaly_score, argmax_labels

METADATA_KEY = 'dense_ood_ros'
METADATA_VERSION = 1
INPUT_NAME, OUTPUT_NAME = 'image', 'logits'
# Fastest first; whatever this ONNX Runtime build lacks is skipped (and said once).
DEFAULT_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider',
                     'CPUExecutionProvider')


@dataclasses.dataclass(frozen=True)
class OnnxModelInfo:
    """What an exported model says about itself (the metadata a checkpoint carries)."""

    class_names: list
    palette: list
    mean: list
    std: list
    input_short_edge: int
    default_score: str
    temperatures: dict
    threshold: float
    source_checkpoint: str = ''
    source_sha256: str = ''
    precision: str = 'fp32'
    opset: int = 0
    input_size: list = None  # [H, W] of a fixed-size model; None: any size

    @property
    def num_classes(self):
        """Number of classes of the segmenter."""
        return len(self.class_names)

    def to_json(self):
        """Return the metadata string written into the model."""
        return json.dumps({'version': METADATA_VERSION, **dataclasses.asdict(self)})

    @classmethod
    def from_json(cls, text, path):
        """Parse and validate the metadata string; raise CheckpointError naming `path`."""
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise CheckpointError(path, f'{METADATA_KEY} metadata is not JSON ({error})') \
                from None
        if payload.pop('version', None) != METADATA_VERSION:
            raise CheckpointError(path, f'{METADATA_KEY} metadata version is not '
                                        f'{METADATA_VERSION}')
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.name not in payload)
        if missing:
            raise CheckpointError(path, f'{METADATA_KEY} metadata lacks {missing}')
        info = cls(**{k: v for k, v in payload.items() if k in fields})
        problems = metadata_problems(info)
        if problems:
            raise CheckpointError(path, 'invalid metadata: ' + '; '.join(problems))
        return info


def is_onnx(path):
    """Tell whether a model path names an ONNX file (by its suffix, as the node decides)."""
    return os.fspath(path).lower().endswith('.onnx')


def choose_providers(requested, available):
    """Return (providers to use, requested ones this build lacks), keeping the order."""
    usable = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available]
    if not usable:
        raise ValueError(f'none of the ONNX Runtime providers {list(requested)} is available '
                         f'(this build has {list(available)})')
    return usable, missing


def open_session(path, providers=DEFAULT_PROVIDERS):
    """Return (InferenceSession, OnnxModelInfo, providers missing) for an exported model.

    Refuses, with a CheckpointError naming the file and what is wrong: a missing or
    unreadable file, no dense_ood_ros metadata, an input that is not float (N, 3, H, W),
    an output whose class count is not the metadata's.
    """
    import onnxruntime

    if not os.path.isfile(path):
        raise CheckpointError(path, 'no such file')
    usable, missing = choose_providers(providers, onnxruntime.get_available_providers())
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initialisers are not ours
    try:
        session = onnxruntime.InferenceSession(os.fspath(path), options, providers=usable)
    except Exception as error:  # noqa: B902 - ORT raises its own exception types
        raise CheckpointError(path, f'ONNX Runtime cannot load it ({error})') from None
    metadata = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in metadata:
        raise CheckpointError(path, f'no {METADATA_KEY} metadata (class names, normalisation, '
                                    'threshold): export it with dense_ood_ros.tools.export_onnx')
    info = OnnxModelInfo.from_json(metadata[METADATA_KEY], path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3 \
            or inputs[0].type != 'tensor(float)':
        shapes = [(i.name, i.shape, i.type) for i in inputs]
        raise CheckpointError(path, f'input must be one float (N, 3, H, W) tensor, got {shapes}')
    if len(outputs) != 1 or len(outputs[0].shape) != 4:
        raise CheckpointError(path, f'output must be one (N, K, H, W) tensor of logits, got '
                                    f'{[(o.name, o.shape) for o in outputs]}')
    channels = outputs[0].shape[1]
    if isinstance(channels, int) and channels != info.num_classes:
        raise CheckpointError(path, f'the network gives {channels} classes but its metadata '
                                    f'names {info.num_classes}: exported from another class set?')
    return session, info, missing


class OnnxPipeline(PipelineSettings):
    """DenseOODPipeline's interface on an ONNX model (see the module docstring)."""

    def __init__(self, path, *, providers=DEFAULT_PROVIDERS, input_short_edge=None,
                 score=None, temperature=None, threshold=None, upsample='logits'):
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f'upsample {upsample!r}: expected one of {UPSAMPLE_MODES}')
        self.path = os.fspath(path)
        self.session, self.info, self.missing_providers = open_session(path, providers)
        self.upsample = upsample
        self.class_names = list(self.info.class_names)
        self.num_classes = self.info.num_classes
        self.palette = [tuple(c) for c in self.info.palette]
        self.input_short_edge = int(input_short_edge or self.info.input_short_edge)
        if self.input_short_edge < STRIDE:
            raise ValueError(f'input_short_edge must be >= {STRIDE}, got {input_short_edge}')
        shape = self.session.get_inputs()[0].shape
        self.fixed_size = tuple(shape[2:]) if all(isinstance(d, int) for d in shape[2:]) \
            else None
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.device = 'onnxruntime:' + self.session.get_providers()[0]
        self.half = self.info.precision == 'fp16'
        # Padding with the mean colour is zero after the graph's normalisation, as in torch.
        self._fill = np.asarray(self.info.mean, np.float32) * 255.0
        score, temperature, threshold = resolve_settings(
            self.info, score=score, temperature=temperature, threshold=threshold)
        self._init_settings(score, temperature, threshold)

    def preprocess(self, frames, size):
        """Resize and pad frames into one float32 (N, 3, H', W') input, 0..255 RGB."""
        height, width = size
        padded = (height + -height % STRIDE, width + -width % STRIDE)
        if self.fixed_size is not None and padded != self.fixed_size:
            raise ValueError(
                f'{self.path} was exported for a {self.fixed_size[1]}x{self.fixed_size[0]} '
                f'network input, but these frames need {padded[1]}x{padded[0]} (short edge '
                f'{self.input_short_edge}): export it for this camera size '
                '(export_onnx --height/--width)')
        batch = np.empty((len(frames), padded[0], padded[1], 3), np.float32)
        batch[:] = self._fill
        for row, rgb in enumerate(frames):
            batch[row, :height, :width] = (
                rgb if rgb.shape[:2] == size
                else cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR))
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def _logits(self, frames, size):
        batch = self.preprocess(frames, size)
        if self.fixed_batch is not None and self.fixed_batch != len(frames):
            # A fixed-batch model runs once per frame (documented in the README).
            logits = np.concatenate([self.session.run(None, {INPUT_NAME: batch[i:i + 1]})[0]
                                     for i in range(len(frames))])
        else:
            logits = self.session.run(None, {INPUT_NAME: batch})[0]
        if logits.shape[1] != self.num_classes:
            raise ValueError(f'{self.path} gave {logits.shape[1]} classes, its metadata '
                             f'names {self.num_classes}')
        return logits[:, :, :size[0], :size[1]].astype(np.float32, copy=False)

    def _at_resolution(self, logits, shape):
        """Return (1, K, H, W) logits bilinearly upsampled to `shape` (upsample 'logits')."""
        if self.upsample != 'logits' or tuple(logits.shape[-2:]) == tuple(shape):
            return logits
        # Plane by plane: contiguous class planes keep every later step on contiguous memory.
        return np.stack([cv2.resize(np.ascontiguousarray(plane), (shape[1], shape[0]),
                                    interpolation=cv2.INTER_LINEAR)
                         for plane in logits[0]])[None]

    @staticmethod
    def _labels(logits):
        return argmax_labels(logits)

    @staticmethod
    def _score_map(logits, score_name, temperature):
        """Return the (H, W) float32 score of (1, K, H, W) logits."""
        return anomaly_score(logits, score=score_name, temperature=temperature)[0]

    def infer_scores(self, rgb, settings):
        """Run one frame once; return (labels, [score map per (score, temperature)])."""
        check_rgb(rgb)
        height, width = rgb.shape[:2]
        logits = self._logits([rgb], network_size(height, width, self.input_short_edge))
        logits = self._at_resolution(logits, (height, width))
        maps = [anomaly_score(logits, score=name, temperature=temperature)[0]
                for name, temperature in settings]
        return (resize_labels(self._labels(logits)[0], height, width),
                [resize_score(score, height, width) for score in maps])
