"""Obstacle hypotheses from a dense anomaly score: connected regions on the drivable area.

ROS-free (numpy and OpenCV). A planner cannot use a float image; it can use a short list of
boxes. A region is a connected component (8-connectivity, as the road-anomaly benchmarks
label components) of ``score > threshold`` that touches the drivable area and is large
enough. Touching is tested against the drivable mask grown by ``touch_margin`` pixels: an
obstacle's own pixels are labelled as some other class by the argmax, and only its rim
meets the road.
"""

import dataclasses

import cv2
import numpy as np

REGION_SCORES = ('peak', 'mean')
# The road classes of the Cityscapes label space: where an obstacle matters to a planner.
DEFAULT_DRIVABLE_CLASSES = ('road',)
DEFAULT_TOUCH_MARGIN = 2


@dataclasses.dataclass(frozen=True)
class AnomalyRegion:
    """One obstacle hypothesis in camera pixels.

    The box covers columns ``x .. x + width - 1`` and rows ``y .. y + height - 1``;
    ``score`` is the peak or the mean score, as the caller chose.
    """

    x: int
    y: int
    width: int
    height: int
    area: int
    peak: float
    mean: float
    score: float

    @property
    def box(self):
        """Return (x, y, width, height)."""
        return self.x, self.y, self.width, self.height


def drivable_ids(class_names, drivable):
    """Return the class ids named in ``drivable``; raise ValueError naming unknown ones."""
    names = list(class_names)
    unknown = [name for name in drivable if name not in names]
    if unknown:
        raise ValueError(f'drivable classes {unknown} are not classes of this model '
                         f'(it has {names})')
    return tuple(sorted({names.index(name) for name in drivable}))


def default_drivable_ids(class_names):
    """Return the ids of the default drivable classes the model has (none: every region)."""
    names = list(class_names)
    return tuple(sorted(names.index(name) for name in DEFAULT_DRIVABLE_CLASSES
                        if name in names))


def check_region_settings(*, min_area, region_score, touch_margin=DEFAULT_TOUCH_MARGIN,
                          min_road_share=0.0):
    """Raise ValueError naming the first region setting that is out of range."""
    if not 0.0 <= min_road_share <= 1.0:
        raise ValueError(f'min_road_share must lie in [0, 1], got {min_road_share!r}')
    if not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f'region min_area must be an integer >= 1, got {min_area!r}')
    if region_score not in REGION_SCORES:
        raise ValueError(f'region score {region_score!r}: expected one of {REGION_SCORES}')
    if not isinstance(touch_margin, (int, np.integer)) or touch_margin < 0:
        raise ValueError(f'touch_margin must be an integer >= 0, got {touch_margin!r}')


def find_regions(score, labels, *, threshold, drivable, min_area, region_score='peak',
                 touch_margin=DEFAULT_TOUCH_MARGIN, min_road_share=0.0, with_mask=False):
    """Return the obstacle hypotheses of one frame, largest first.

    ``score`` is a float (H, W) anomaly score, ``labels`` the (H, W) class ids of the same
    frame and ``drivable`` the ids of the drivable classes (an empty collection keeps every
    region, wherever it lies). Regions need ``area >= min_area`` pixels and, with
    ``min_road_share`` > 0, at least that share of drivable pixels in the ring of
    ``touch_margin`` pixels around them (an obstacle on the road is surrounded by road; a
    false alarm along a kerb or a car's outline has road on one side only). ``with_mask``
    returns (regions, bool (H, W) mask of their pixels) instead, for component metrics.
    """
    check_region_settings(min_area=min_area, region_score=region_score,
                          touch_margin=touch_margin, min_road_share=min_road_share)
    score = np.asarray(score)
    if score.ndim != 2 or np.asarray(labels).shape != score.shape:
        raise ValueError(f'score {score.shape} and labels {np.asarray(labels).shape} must be '
                         'two maps of one size')
    mask = (score > threshold).view(np.uint8)
    count, components, stats, _ = cv2.connectedComponentsWithStats(
        mask, connectivity=8, ltype=cv2.CV_32S)
    if count <= 1:
        return _answer([], np.zeros(score.shape, dtype=bool), with_mask)
    areas = stats[:, cv2.CC_STAT_AREA]
    keep = areas >= min_area
    keep[0] = False  # the background
    if drivable:
        road, anomalous = _class_mask(labels, drivable), mask.view(bool)
        share = _road_share(components, anomalous, road, count, touch_margin)
        if min_road_share > 0:
            keep &= share >= min_road_share
        else:
            # Touching: road in the ring, or road among the region's own pixels.
            on_road = np.zeros(count, dtype=bool)
            on_road[np.unique(components[anomalous & road])] = True
            keep &= (share > 0) | on_road
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        return _answer([], np.zeros(score.shape, dtype=bool), with_mask)
    # Statistics over the anomalous pixels only: a few percent of the frame, not all of it.
    inside = mask.view(bool)
    ids, values = components[inside], score[inside].astype(np.float64)
    sums = np.bincount(ids, weights=values, minlength=count)
    peaks = np.full(count, -np.inf)
    np.maximum.at(peaks, ids, values)
    regions = []
    for index in kept:
        left, top, width, height, area = (int(v) for v in stats[index])
        peak, mean = float(peaks[index]), float(sums[index] / area)
        regions.append(AnomalyRegion(x=left, y=top, width=width, height=height, area=area,
                                     peak=peak, mean=mean,
                                     score=peak if region_score == 'peak' else mean))
    regions.sort(key=lambda region: -region.area)
    return _answer(regions, keep[components] if with_mask else None, with_mask)


def _answer(regions, mask, with_mask):
    return (regions, mask) if with_mask else regions


def mask_of_boxes(mask, boxes):
    """Return the pixels of the components of ``mask`` whose bounding box is in ``boxes``.

    Recovers a node's regions from its published anomaly mask and detections: the node
    labels that very mask with the same 8-connectivity, so each reported box is exactly one
    component's box. ``boxes`` holds (x, y, width, height) tuples.
    """
    mask = np.asarray(mask, dtype=bool)
    wanted = {tuple(int(v) for v in box) for box in boxes}
    if not wanted:
        return np.zeros(mask.shape, dtype=bool)
    count, components, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    keep = np.array([tuple(int(v) for v in stats[i, :4]) in wanted for i in range(count)])
    keep[0] = False
    return keep[components]


def _road_share(components, anomalous, road, count, margin):
    """Return, per component, the share of drivable pixels in the ring around it.

    The ring is the component grown by `margin` pixels, less the anomalous pixels. Growing
    the label image with a max filter attributes each ring pixel to a neighbouring
    component (where two lie within the margin of each other, to the higher id).
    """
    kernel = np.ones((2 * max(margin, 1) + 1,) * 2, dtype=np.uint8)
    # float32 holds the ids exactly (below 2**24 components); OpenCV has no int32 dilation.
    grown = cv2.dilate(components.astype(np.float32), kernel).astype(np.int64)
    ring = (grown > 0) & ~anomalous
    ids = grown[ring]
    sizes = np.bincount(ids, minlength=count)
    on_road = np.bincount(ids, weights=road[ring], minlength=count)
    return np.divide(on_road, sizes, out=np.zeros(count), where=sizes > 0)


def _class_mask(labels, classes):
    """Return labels in `classes` as a bool mask (a lookup table: np.isin is 5x slower)."""
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        return np.isin(labels, classes)
    table = np.zeros(256, dtype=bool)
    table[list(classes)] = True
    return table[labels]


def box_iou(a, b):
    """Return the IoU of two (x, y, width, height) pixel boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class RegionPersistence:
    """Report a region once it has been seen in ``required`` of the last ``window`` frames.

    A region counts as seen in an earlier frame when a region of that frame overlaps its box
    with IoU >= ``min_iou`` (simple association, no motion model: at camera rates an
    obstacle moves little between frames). ``required = window = 1`` reports every region.
    One instance per camera.
    """

    def __init__(self, required=1, window=1, *, min_iou=0.3):
        if not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f'persistence window must be an integer >= 1, got {window!r}')
        if not isinstance(required, (int, np.integer)) or not 1 <= required <= window:
            raise ValueError(f'persistence must be an integer in [1, window={window}], '
                             f'got {required!r}')
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f'min_iou must lie in (0, 1], got {min_iou!r}')
        self.required, self.window, self.min_iou = int(required), int(window), min_iou
        self._history = []  # boxes of up to window - 1 earlier frames, newest last

    def update(self, regions):
        """Take one frame's regions; return those persistent enough to report."""
        boxes = [region.box for region in regions]
        reported = [region for region in regions
                    if 1 + self._seen_before(region.box) >= self.required]
        if self.window > 1:
            self._history = (self._history + [boxes])[-(self.window - 1):]
        return reported

    def _seen_before(self, box):
        return sum(any(box_iou(box, earlier) >= self.min_iou for earlier in frame)
                   for frame in self._history)

    def reset(self):
        """Forget earlier frames (after a settings change or a gap in the stream)."""
        self._history = []
