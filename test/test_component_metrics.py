"""Component-level metrics against hand-worked cases and a set-by-set reference."""

import numpy as np
import pytest
from scipy import ndimage

from dense_ood_ros.component_metrics import (ComponentAccumulator, frame_components,
                                             SIOU_THRESHOLDS)

EIGHT = np.ones((3, 3), dtype=int)


def _reference(prediction, truth, min_truth_size):
    """sIoU and PPV straight from the definitions, with Python sets of pixel coordinates."""
    truth = truth.copy()
    prediction = prediction & (truth != 255)
    gt_ids, num_gt = ndimage.label(truth == 1, EIGHT)
    pred_ids, num_pred = ndimage.label(prediction, EIGHT)
    for k in range(1, num_gt + 1):
        if np.count_nonzero(gt_ids == k) < min_truth_size:
            truth[gt_ids == k] = 255
    roi = truth != 255

    def pixels(ids, k):
        return {tuple(p) for p in np.argwhere((ids == k) & roi)}

    gts = [pixels(gt_ids, k) for k in range(1, num_gt + 1)]
    gts = [g for g in gts if g]
    preds = [pixels(pred_ids, k) for k in range(1, num_pred + 1)]
    preds = [p for p in preds if p]
    siou = []
    for k, gt in enumerate(gts):
        hit = set().union(*[p for p in preds if p & gt])
        others = set().union(*[g for j, g in enumerate(gts) if j != k])
        siou.append(len(gt & hit) / len((gt | hit) - others))
    all_gt = set().union(*gts)
    ppv = [len(p & all_gt) / len(p) for p in preds]
    return sorted(siou), sorted(ppv)


def _truth(height=20, width=30):
    return np.zeros((height, width), dtype=np.uint8)


def test_a_perfect_prediction_scores_one_everywhere():
    truth = _truth()
    truth[5:10, 5:10] = 1
    siou, ppv = frame_components(truth == 1, truth)
    assert siou.tolist() == [1.0] and ppv.tolist() == [1.0]
    metrics = ComponentAccumulator()
    metrics.add(truth == 1, truth)
    result = metrics.compute()
    assert result['f1_mean'] == 1.0 and result['siou'] == 1.0 and result['ppv'] == 1.0


def test_one_prediction_over_two_obstacles_is_not_punished_twice():
    truth = _truth()
    truth[5:10, 2:6] = 1    # 20 px
    truth[5:10, 10:14] = 1  # 20 px
    prediction = np.zeros(truth.shape, dtype=bool)
    prediction[5:10, 2:14] = True  # 60 px covering both and the 20 px gap
    siou, ppv = frame_components(prediction, truth)
    # Each obstacle: intersection 20; union 60 less the other obstacle's 20 pixels.
    assert siou.tolist() == [0.5, 0.5]
    assert ppv.tolist() == [pytest.approx(40 / 60)]


def test_void_pixels_are_out_and_small_truth_components_are_ignored():
    truth = _truth()
    truth[5:10, 5:10] = 1                 # 25 px obstacle
    truth[15:17, 20:22] = 1               # 4 px: below the minimum size, becomes void
    truth[0:3, :] = 255
    prediction = np.zeros(truth.shape, dtype=bool)
    prediction[0:3, 0:5] = True           # entirely on void: no predicted component
    prediction[15:17, 20:22] = True       # on the ignored obstacle: not a false positive
    prediction[5:10, 5:10] = True
    siou, ppv = frame_components(prediction, truth, min_truth_size=10)
    assert siou.tolist() == [1.0] and ppv.tolist() == [1.0]
    # With no minimum the small obstacle counts, and so does its prediction.
    siou, ppv = frame_components(prediction, truth, min_truth_size=0)
    assert siou.tolist() == [1.0, 1.0] and ppv.tolist() == [1.0, 1.0]


def test_f1_counts_misses_and_false_alarms_per_threshold():
    truth = _truth()
    truth[2:6, 2:6] = 1                   # found at sIoU 16/24
    truth[12:16, 20:24] = 1               # missed
    prediction = np.zeros(truth.shape, dtype=bool)
    prediction[2:6, 2:8] = True           # 24 px, 16 on the obstacle: PPV 2/3
    prediction[15:18, 0:3] = True         # a false alarm, PPV 0
    metrics = ComponentAccumulator()
    metrics.add(prediction, truth)
    result = metrics.compute()
    assert result['truth_components'] == 2 and result['predicted_components'] == 2
    assert result['siou'] == pytest.approx((2 / 3 + 0) / 2)
    assert result['ppv'] == pytest.approx((2 / 3 + 0) / 2)
    f1 = []
    for t in SIOU_THRESHOLDS:
        tp = 1 if 2 / 3 >= t else 0
        fn = 2 - tp
        fp = 1 + (1 if 2 / 3 < t else 0)
        f1.append(2 * tp / (2 * tp + fn + fp))
    assert result['f1_mean'] == pytest.approx(np.mean(f1))
    assert result['f1_25'] == pytest.approx(2 / 4) and result['f1_75'] == 0.0


def test_nothing_to_score_is_none_not_zero():
    truth = _truth()
    metrics = ComponentAccumulator()
    metrics.add(np.zeros(truth.shape, dtype=bool), truth)
    result = metrics.compute()
    assert result['siou'] is None and result['ppv'] is None and result['f1_mean'] is None
    with pytest.raises(ValueError, match='differ in size'):
        metrics.add(np.zeros((3, 3), dtype=bool), truth)


@pytest.mark.parametrize('seed', range(6))
def test_random_blobs_equal_the_set_by_set_reference(seed):
    rng = np.random.default_rng(seed)
    truth = _truth(40, 50)
    prediction = np.zeros(truth.shape, dtype=bool)
    for _ in range(6):
        top, left = rng.integers(0, 34), rng.integers(0, 44)
        truth[top:top + rng.integers(2, 7), left:left + rng.integers(2, 7)] = 1
    for _ in range(6):
        top, left = rng.integers(0, 34), rng.integers(0, 44)
        prediction[top:top + rng.integers(2, 9), left:left + rng.integers(2, 9)] = True
    truth[rng.random(truth.shape) < 0.03] = 255
    siou, ppv = frame_components(prediction, truth, min_truth_size=5)
    ref_siou, ref_ppv = _reference(prediction, truth, 5)
    assert sorted(siou.tolist()) == pytest.approx(ref_siou)
    assert sorted(ppv.tolist()) == pytest.approx(ref_ppv)
