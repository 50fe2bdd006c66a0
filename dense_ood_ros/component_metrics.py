"""Component-level anomaly metrics of the road-anomaly benchmarks (SegmentMeIfYouCan).

Per ground-truth component k the adjusted IoU ``sIoU(k) = |k & P(k)| / |(k | P(k)) - A(k)|``,
where P(k) is the union of the predicted components meeting k and A(k) the pixels of other
ground-truth components inside P(k) (so one prediction covering two obstacles is not
punished twice); per predicted component its precision ``PPV`` (share of its pixels on any
ground-truth component). At each sIoU threshold t in 0.25, 0.30, ..., 0.75 a ground-truth
component with sIoU >= t is a true positive, else a false negative, and a predicted
component with PPV < t a false positive; F1 = 2 TP / (2 TP + FN + FP), summed over frames,
then averaged over t (``f1_mean``). sIoU and PPV are means over all components of all frames.

As the benchmark's evaluation code does: components use 8-connectivity; predicted pixels on
void are dropped before labelling; ground-truth components smaller than ``min_truth_size``
pixels become void (neither hit nor missed); everything is counted inside the region of
interest (labels other than 255) only.
"""

import cv2
import numpy as np

from dense_ood_ros.datasets.sample import OUTLIER
from dense_ood_ros.labels import IGNORE_INDEX

SIOU_THRESHOLDS = tuple(np.round(np.linspace(0.25, 0.75, 11), 2))
# The benchmark's obstacle track ignores ground-truth components under 10 pixels.
DEFAULT_MIN_TRUTH_SIZE = 10


def frame_components(prediction, truth, *, min_truth_size=DEFAULT_MIN_TRUTH_SIZE):
    """Return (sIoU per ground-truth component, PPV per predicted component) of one frame.

    ``prediction`` is a bool (H, W) mask of the predicted anomalous pixels, ``truth`` the
    (H, W) uint8 map with 0 inlier, 1 anomaly and 255 void.
    """
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f'prediction {prediction.shape} and ground truth {truth.shape} '
                         'differ in size')
    void = truth == IGNORE_INDEX
    num_truth, truth_ids = _components(truth == OUTLIER)
    num_pred, pred_ids = _components(prediction & ~void)
    if min_truth_size > 1 and num_truth > 1:
        small = np.bincount(truth_ids.ravel(), minlength=num_truth) < min_truth_size
        small[0] = False
        void |= small[truth_ids]
        truth_ids = np.where(small[truth_ids], 0, truth_ids)
    roi = ~void
    # overlap[i, j]: ROI pixels of ground-truth component i in predicted component j
    # (0 on either side: background). Every quantity of the benchmark is a sum over it.
    overlap = np.bincount(truth_ids[roi].astype(np.int64) * num_pred + pred_ids[roi],
                          minlength=num_truth * num_pred).reshape(num_truth, num_pred)
    pred_size = overlap.sum(axis=0)
    truth_size = overlap.sum(axis=1)
    present_truth = np.flatnonzero(truth_size[1:]) + 1
    present_pred = np.flatnonzero(pred_size[1:]) + 1
    siou = []
    for i in present_truth:
        hits = np.flatnonzero(overlap[i, 1:]) + 1
        intersection = overlap[i, hits].sum()
        covered = pred_size[hits].sum()
        # Pixels of the hitting predictions that belong to other ground-truth components.
        adjustment = covered - overlap[0, hits].sum() - intersection
        siou.append(intersection / (covered + truth_size[i] - intersection - adjustment))
    ppv = [overlap[1:, j].sum() / pred_size[j] for j in present_pred]
    return np.asarray(siou, dtype=np.float64), np.asarray(ppv, dtype=np.float64)


def _components(mask):
    count, ids = cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return count, ids


class ComponentAccumulator:
    """Accumulate frames; ``compute()`` gives sIoU, PPV and F1 over all of them."""

    def __init__(self, *, min_truth_size=DEFAULT_MIN_TRUTH_SIZE, thresholds=SIOU_THRESHOLDS):
        self.min_truth_size = int(min_truth_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.reset()

    def reset(self):
        """Forget every frame."""
        self._siou, self._ppv = [], []
        self.frames = 0

    def add(self, prediction, truth):
        """Take one frame's predicted mask and ground truth (0 / 1 / 255)."""
        siou, ppv = frame_components(prediction, truth, min_truth_size=self.min_truth_size)
        self._siou.append(siou)
        self._ppv.append(ppv)
        self.frames += 1

    def compute(self):
        """Return sIoU, PPV, f1_mean (None where there is nothing to average) and counts."""
        siou = np.concatenate(self._siou) if self._siou else np.zeros(0)
        ppv = np.concatenate(self._ppv) if self._ppv else np.zeros(0)
        f1 = {}
        for t in self.thresholds:
            tp = int(np.count_nonzero(siou >= t))
            fn, fp = siou.size - tp, int(np.count_nonzero(ppv < t))
            f1[t] = 2 * tp / (2 * tp + fn + fp) if (tp + fn + fp) else None
        defined = [value for value in f1.values() if value is not None]
        return {
            'siou': float(siou.mean()) if siou.size else None,
            'ppv': float(ppv.mean()) if ppv.size else None,
            'f1_mean': float(np.mean(defined)) if defined else None,
            'f1_25': f1.get(0.25), 'f1_50': f1.get(0.5), 'f1_75': f1.get(0.75),
            'truth_components': int(siou.size), 'predicted_components': int(ppv.size),
        }
