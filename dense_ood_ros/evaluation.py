"""The evaluators: reset(), process() each prediction with its ground truth, evaluate().

One home for the figures every tool reports, after detectron2's DatasetEvaluator:
``train.evaluate`` and training validation feed DenseEvaluator from a pipeline
(dense_ood_ros.evaluation_loop.run_evaluation), ``eval_stream`` feeds it what a node
published. The metrics themselves are dense_ood_ros.metrics and component_metrics.
ClassifyEvaluator is the image-wide task's (the paper's Table 1).
"""

import dataclasses

import numpy as np

from dense_ood_ros.component_metrics import ComponentAccumulator
from dense_ood_ros.datasets.sample import INLIER, OUTLIER
from dense_ood_ros.metrics import (ConfusionMatrix, OODAccumulator, open_set_metrics,
                                   PerImageOODAccumulator, UndefinedMetricError)
from dense_ood_ros.node_params import REGION_DEFAULTS
from dense_ood_ros.scores import DEFAULT_TEMPERATURES

# Training validates MSP at its recommended temperature.
DEFAULT_SETTINGS = (('msp', DEFAULT_TEMPERATURES['msp']),)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What one frame's model said, at the resolution of its ground truth.

    ``labels``: (H, W) class ids or None; ``scores``: one (H, W) anomaly score map per
    score row of the evaluator; ``regions``: one (H, W) bool mask of the reported obstacle
    regions per region row.
    """

    labels: np.ndarray | None = None
    scores: tuple = ()
    regions: tuple = ()

    def pixels(self):
        """Return the frame's pixel count (0 for an empty prediction)."""
        arrays = [a for a in (self.labels, *self.scores, *self.regions) if a is not None]
        return int(arrays[0].size) if arrays else 0


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """One frame's labels, None where absent; a dataset Sample serves as well.

    ``ood``: 0 inlier, 1 outlier, 255 void; ``semantic``: class ids, 255 ignored.
    """

    ood: np.ndarray | None = None
    semantic: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class ComponentSettings:
    """The node's region settings to score at component level (one row per combination).

    Regions come from the pipeline's own score, temperature and threshold, as the node
    publishes them; persistence is left out (dataset images are not a video).
    """

    drivable: tuple | None
    min_areas: tuple = (REGION_DEFAULTS['min_area'],)
    min_road_shares: tuple = (REGION_DEFAULTS['min_road_share'],)

    def combinations(self):
        """Return every (min_area, min_road_share) pair to score."""
        return [(area, share) for area in self.min_areas for share in self.min_road_shares]


class DenseEvaluator:
    """mIoU and pixel accuracy of labels, AP / FPR95 / AUROC per score row, regions' sIoU.

    ``settings`` names the (score, temperature) of each map a Prediction carries, in order;
    ``components`` (ComponentSettings, or None for no component metrics) the region masks,
    one per ``combinations()`` entry. Pixels are pooled over frames, or with ``per_image``
    averaged per frame (the StreetHazards protocol). The ground truth of a frame is anything
    with ``ood`` (0 inlier, 1 outlier, 255 void) and ``semantic`` arrays or None, e.g. a
    dataset Sample.
    """

    def __init__(self, num_classes, *, settings=DEFAULT_SETTINGS, per_image=False,
                 components=None):
        self.num_classes = int(num_classes)
        self.settings = [tuple(setting) for setting in settings]
        self.per_image = bool(per_image)
        self.components = components
        self.reset()

    def reset(self):
        """Forget every frame processed."""
        accumulator = PerImageOODAccumulator if self.per_image else OODAccumulator
        self.accumulators = [accumulator() for _ in self.settings]
        self.region_rows = self.components.combinations() if self.components else []
        self.regions = [ComponentAccumulator() for _ in self.region_rows]
        self.confusion = ConfusionMatrix(self.num_classes)
        self.images = self.pixels = 0
        self.ood_images = self.semantic_images = 0
        self.outlier_pixels = self.valid_pixels = 0

    def process(self, prediction, truth):
        """Add one frame: its Prediction and its ground truth."""
        if len(prediction.scores) != len(self.accumulators):
            raise ValueError(f'a prediction with {len(prediction.scores)} score maps for '
                             f'{len(self.accumulators)} score rows')
        self.images += 1
        self.pixels += prediction.pixels()
        if truth.semantic is not None and prediction.labels is not None:
            self.semantic_images += 1
            self.confusion.add(prediction.labels, truth.semantic)
        if truth.ood is None:
            return
        self.ood_images += 1
        for accumulator, score in zip(self.accumulators, prediction.scores):
            accumulator.add(score, truth.ood)
        if len(prediction.regions) != len(self.regions):
            raise ValueError(f'a prediction with {len(prediction.regions)} region masks for '
                             f'{len(self.regions)} region rows')
        for accumulator, mask in zip(self.regions, prediction.regions):
            accumulator.add(mask, truth.ood)
        outliers = int(np.count_nonzero(truth.ood == OUTLIER))
        self.outlier_pixels += outliers
        self.valid_pixels += outliers + int(np.count_nonzero(truth.ood == INLIER))

    def evaluate(self):
        """Return the metrics of every frame since reset(); None where undefined.

        Keys: images, pixels, ood_images, miou, pixel_accuracy, anomaly_pixel_share, rows
        (per score row: score, temperature, miou, ap, fpr95, auroc), components (per region
        row: min_area, min_road_share and component_metrics' figures) and ood_undefined (why
        AP, FPR95 and AUROC are None on a set that has outlier ground truth, else None).
        Non-finite scores raise ValueError: they are a fault, not a property of the data.
        """
        segmentation = self.confusion.compute() if self.semantic_images else {}
        miou = segmentation.get('miou')
        rows, undefined = [], None
        for (score, temperature), accumulator in zip(self.settings, self.accumulators):
            ood = {}
            if self.ood_images:
                try:
                    ood = accumulator.compute()
                except UndefinedMetricError as error:  # no outlier or no inlier pixel
                    undefined = undefined or str(error)
            rows.append({'score': score, 'temperature': temperature, 'miou': miou,
                         'ap': ood.get('ap'), 'fpr95': ood.get('fpr95'),
                         'auroc': ood.get('auroc')})
        components = [{'min_area': area, 'min_road_share': share, **accumulator.compute()}
                      for (area, share), accumulator in zip(self.region_rows, self.regions)]
        return {'images': self.images, 'pixels': self.pixels, 'ood_images': self.ood_images,
                'miou': miou, 'pixel_accuracy': segmentation.get('pixel_accuracy'),
                'anomaly_pixel_share': (self.outlier_pixels / self.valid_pixels
                                        if self.valid_pixels else None),
                'rows': rows, 'components': components, 'ood_undefined': undefined}


class ClassifyEvaluator:
    """Accuracy, mean max-softmax and Table 1's open-set metrics of an image classifier.

    process() takes a batch's max-softmax scores and predicted classes, with the true
    classes for in-distribution images (the positives) or the name of the outlier set the
    batch belongs to.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget every batch processed."""
        self._scores, self._correct, self._outliers = [], [], {}

    def process(self, msp, predicted, labels=None, *, outlier_set=None):
        """Add a batch of in-distribution images (``labels``) or of ``outlier_set``."""
        if (labels is None) == (outlier_set is None):
            raise ValueError('give the in-distribution labels or the outlier set, not both')
        if outlier_set is not None:
            self._outliers.setdefault(outlier_set, []).append(np.asarray(msp))
            return
        self._scores.append(np.asarray(msp))
        self._correct.append(np.asarray(predicted) == np.asarray(labels))

    def evaluate(self):
        """Return {'images', 'accuracy', 'msp', 'ood': {set: open_set_metrics}}."""
        scores = np.concatenate(self._scores) if self._scores else np.empty(0, np.float32)
        correct = np.concatenate(self._correct) if self._correct else np.empty(0, bool)
        return {'images': int(scores.size),
                'accuracy': float(np.mean(correct)) if correct.size else None,
                'msp': float(np.mean(scores)) if scores.size else None,
                'ood': {name: open_set_metrics(scores, np.concatenate(chunks))
                        for name, chunks in self._outliers.items()}}
