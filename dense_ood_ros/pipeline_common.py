"""The backend-free half of the pipeline: settings, frame checks, batching, resizing.

No torch here: the ONNX Runtime backend (onnx_pipeline) and the node on an ``.onnx`` model
import only this, numpy and OpenCV. The PyTorch backend (pipeline.DenseOODPipeline) shares it.
"""

import dataclasses
import threading

import cv2
import numpy as np

from dense_ood_ros.scores_numpy import SCORES

# LDN-121 downsamples by 32; padding to a multiple keeps every ladder skip aligned.
STRIDE = 32
# What is brought to the frame's resolution: the logits (the paper) or the final maps.
UPSAMPLE_MODES = ('logits', 'scores')


@dataclasses.dataclass
class PipelineResult:
    """Everything one frame produces, all at the input resolution."""

    labels: np.ndarray    # uint8 (H, W) class ids
    score: np.ndarray     # float32 (H, W) anomaly score, higher is more anomalous
    mask: np.ndarray      # bool (H, W), score > threshold
    open_set: np.ndarray  # uint8 (H, W) labels with anomalous pixels set to num_classes
    batch: int = 1        # frames its forward pass served, itself included
    threshold: float = None  # the threshold `mask` was cut at (settings may change later)


def network_size(height, width, short_edge):
    """Return the (h, w) a frame is resized to so that its short side is `short_edge`."""
    scale = short_edge / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_rgb(rgb):
    """Raise ValueError unless `rgb` is an (H, W, 3) uint8 array with H, W >= 1."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f'expected an (H, W, 3) uint8 numpy array, got {type(rgb).__name__}')
    if rgb.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 array, got dtype {rgb.dtype}')
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected an (H, W, 3) uint8 array, got shape {rgb.shape}')
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f'expected a non-empty image, got shape {rgb.shape}')


class PipelineSettings:
    """Run-time settings and the per-frame plumbing every backend shares.

    `score`, `temperature` and `threshold` may be changed between calls (the node exposes
    them as dynamic parameters); each assignment is validated. A backend sets `num_classes`
    and `input_short_edge`, calls `_init_settings` and implements ``_logits(frames, size)``
    (network resolution), ``_at_resolution(logits, shape)``, ``_labels(logits)`` and
    ``_score_map(logits, score, temperature)`` (numpy out) in its own tensor library.
    """

    def _init_settings(self, score, temperature, threshold):
        # Settings may change from another thread (ROS parameter callbacks) mid-batch.
        self.settings_lock = threading.RLock()
        self.score = score
        self.temperature = temperature
        self.threshold = threshold

    @property
    def score(self):
        """Name of the anomaly score: 'msp' or 'entropy'."""
        return self._score

    @score.setter
    def score(self, value):
        if value not in SCORES:
            raise ValueError(f'score {value!r}: expected one of {SCORES}')
        with self.settings_lock:
            self._score = value

    @property
    def temperature(self):
        """Softmax temperature applied before the score."""
        return self._temperature

    @temperature.setter
    def temperature(self, value):
        if not isinstance(value, (int, float)) or not value > 0 or value == float('inf'):
            raise ValueError(f'temperature must be a positive finite number, got {value!r}')
        with self.settings_lock:
            self._temperature = float(value)

    @property
    def threshold(self):
        """Score above which a pixel is anomalous."""
        return self._threshold

    @threshold.setter
    def threshold(self, value):
        if not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f'threshold must be a finite number, got {value!r}')
        with self.settings_lock:
            self._threshold = float(value)

    def infer(self, rgb):
        """Run one (H, W, 3) uint8 RGB frame; return a PipelineResult at its resolution."""
        return self.infer_batch([rgb])[0]

    def infer_batch(self, frames):
        """Run several frames; those sharing a network input size share one forward pass."""
        for rgb in frames:
            check_rgb(rgb)
        groups = {}
        for index, rgb in enumerate(frames):
            size = network_size(rgb.shape[0], rgb.shape[1], self.input_short_edge)
            groups.setdefault(size, []).append(index)
        with self.settings_lock:
            settings = self._score, self._temperature, self._threshold
        results = [None] * len(frames)
        for size, indices in groups.items():
            outputs = self._forward([frames[i] for i in indices], size, *settings[:2])
            for (score, labels), index in zip(outputs, indices):
                results[index] = self._to_input_resolution(frames[index], score, labels,
                                                           settings[2])
                results[index].batch = len(indices)
        return results

    def _forward(self, frames, size, score_name, temperature):
        """Return [(score, labels)] per frame, numpy, at that frame's own resolution."""
        logits = self._logits(frames, size)
        out = []
        for row, rgb in enumerate(frames):
            full = self._at_resolution(logits[row:row + 1], rgb.shape[:2])
            out.append((self._score_map(full, score_name, temperature), self._labels(full)[0]))
        return out

    def _to_input_resolution(self, rgb, score, labels, threshold):
        height, width = rgb.shape[:2]
        score, labels = resize_score(score, height, width), resize_labels(labels, height, width)
        mask = score > threshold
        open_set = labels.copy()
        open_set[mask] = self.num_classes
        return PipelineResult(labels=labels, score=score, mask=mask, open_set=open_set,
                              threshold=threshold)


def resize_score(score, height, width):
    """Resize a float score map to (height, width) bilinearly, as the node publishes it."""
    if score.shape == (height, width):
        return score
    return cv2.resize(score, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_labels(labels, height, width):
    """Resize a label map to (height, width) with nearest neighbour."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


# Parameter names shared by config/perception.yaml, the node and the command-line tools.
# Zero, an empty string or a negative threshold mean: take the checkpoint's value
# (pipeline_values turns them into None).
PIPELINE_PARAMETER_DEFAULTS = {
    'device': 'auto', 'half': False, 'input_short_edge': 0, 'score': '',
    'temperature': 0.0, 'threshold': -1.0, 'upsample': 'logits',
}


def pipeline_values(params):
    """Return the pipeline entries of ROS-style `params`, with unset values as None.

    ROS parameters are typed and cannot be None, so config/perception.yaml and the node
    spell "take the checkpoint's value" as 0, '' or a negative threshold. This is the one
    place that turns those into None, the convention of every layer below it.
    """
    values = {**PIPELINE_PARAMETER_DEFAULTS,
              **{k: v for k, v in params.items() if k in PIPELINE_PARAMETER_DEFAULTS}}
    # None passes through: values that went through here once stay as they are.
    edge, temperature, threshold = (values[k] for k in ('input_short_edge', 'temperature',
                                                        'threshold'))
    values['input_short_edge'] = int(edge) or None if edge is not None else None
    values['score'] = values['score'] or None
    values['temperature'] = float(temperature) or None if temperature is not None else None
    values['threshold'] = (float(threshold) if threshold is not None and threshold >= 0
                           else None)
    return values


def resolve_settings(checkpoint, *, score=None, temperature=None, threshold=None):
    """Return (score, temperature, threshold) with None taken from the checkpoint.

    The parameter file's spellings of "unset" (0, '', a negative threshold) are refused
    here: they reach this layer only through pipeline_values, which turns them into None.
    """
    score = checkpoint.default_score if score is None else score
    if score not in SCORES:
        raise ValueError(f'score {score!r}: expected one of {SCORES} (None: the '
                         "checkpoint's)")
    if temperature is None:
        temperature = checkpoint.temperatures[score]
    elif not float(temperature) > 0:
        raise ValueError(f'temperature {temperature!r} must be positive (None: the '
                         "checkpoint's)")
    if threshold is None:
        threshold = checkpoint.threshold
    elif not float(threshold) >= 0:
        raise ValueError(f'threshold {threshold!r} must be >= 0 (None: the '
                         "checkpoint's)")
    return score, float(temperature), float(threshold)
