"""Anomaly-segmentation and mIoU metrics against scikit-learn, ties and edge cases included."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from dense_ood_ros.metrics import (ConfusionMatrix, OODAccumulator, PerImageOODAccumulator,
                                   ood_metrics)

TOL = 1e-6


def sklearn_ood(scores, labels, ignore_index=255):
    """Return the reference metrics of the non-ignored pixels, computed by sklearn."""
    scores, labels = np.ravel(scores), np.ravel(labels)
    keep = labels != ignore_index
    scores, labels = scores[keep], labels[keep].astype(np.int64)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return {'ap': average_precision_score(labels, scores),
            'fpr95': float(fpr[np.argmax(tpr >= 0.95)]),
            'auroc': roc_auc_score(labels, scores)}


def streethazards_fpr95(scores, labels, ignore_index=255, level=0.95):
    """Return FPR95 computed the way anomaly-seg's fpr_and_fdr_at_recall does, step by step.

    Scores sorted descending; one threshold per distinct score; keep thresholds from the
    highest reaching full recall upward, in ascending order, plus (recall 1, fps 0); take the
    first argmin of |recall - level|; divide its false positives by all inliers.
    """
    scores, labels = np.ravel(scores).astype(np.float64), np.ravel(labels)
    keep = labels != ignore_index
    scores, positive = scores[keep], labels[keep] == 1
    order = np.argsort(scores, kind='mergesort')[::-1]
    scores, positive = scores[order], positive[order]
    distinct = np.where(np.diff(scores))[0]
    thresholds = np.r_[distinct, positive.size - 1]
    tps = np.cumsum(positive, dtype=np.float64)[thresholds]
    fps = 1 + thresholds - tps
    recall = tps / tps[-1]
    last = tps.searchsorted(tps[-1])
    recall, fps = np.r_[recall[last::-1], 1], np.r_[fps[last::-1], 0]
    return float(fps[np.argmin(np.abs(recall - level))] / np.sum(~positive))


def assert_close(got, want, tol=TOL):
    assert set(want) <= set(got)
    for key in want:
        assert abs(got[key] - want[key]) <= tol, (key, got[key], want[key])


def random_case(rng, n, pos_frac, *, shift=1.0, decimals=None, dtype=np.float32):
    labels = (rng.random(n) < pos_frac).astype(np.uint8)
    labels[rng.integers(n)] = 1  # at least one of each class
    labels[rng.integers(n)] = 0
    if labels.sum() == 0 or labels.sum() == n:
        labels[:2] = [0, 1]
    scores = rng.normal(size=n) + shift * labels
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores.astype(dtype), labels


@pytest.mark.parametrize('n', [7, 1000, 200_000])
@pytest.mark.parametrize('pos_frac', [0.5, 0.05, 0.002])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_random_inputs_match_sklearn(n, pos_frac, dtype):
    rng = np.random.default_rng(n + int(pos_frac * 1000))
    scores, labels = random_case(rng, n, pos_frac, dtype=dtype)
    assert_close(ood_metrics(scores, labels), sklearn_ood(scores, labels))


def test_many_small_random_cases_with_ties_match_sklearn():
    rng = np.random.default_rng(7)
    for _ in range(150):
        n = int(rng.integers(2, 400))
        scores, labels = random_case(rng, n, rng.uniform(0.01, 0.99),
                                     shift=rng.uniform(-2, 3),
                                     decimals=int(rng.integers(0, 3)),
                                     dtype=rng.choice([np.float16, np.float32, np.float64]))
        assert_close(ood_metrics(scores, labels), sklearn_ood(scores, labels))


@pytest.mark.parametrize('levels', [1, 2, 3])
def test_heavy_ties_match_sklearn(levels):
    rng = np.random.default_rng(levels)
    labels = (rng.random(50_000) < 0.1).astype(np.uint8)
    # Outliers lean to the higher levels, but every level holds both classes.
    level = rng.integers(0, levels, labels.size) + labels * rng.integers(0, 2, labels.size)
    scores = np.minimum(level, levels - 1).astype(np.float32)
    got = ood_metrics(scores, labels)
    assert_close(got, sklearn_ood(scores, labels))
    if levels == 1:
        # All scores equal: one threshold, so AP is the prevalence, AUROC 1/2, FPR95 1.
        assert_close(got, {'ap': labels.mean(), 'auroc': 0.5, 'fpr95': 1.0})


def test_equal_scores_across_classes_match_sklearn():
    rng = np.random.default_rng(3)
    values = rng.random(20).astype(np.float32)
    labels = (rng.random(30_000) < 0.3).astype(np.uint8)
    # Both classes draw from the same 20 values: every threshold is a tie across classes.
    scores = values[rng.integers(0, 20, labels.size) // (1 + labels)]
    assert_close(ood_metrics(scores, labels), sklearn_ood(scores, labels))


def test_extreme_imbalance_ten_positives_in_a_million():
    rng = np.random.default_rng(4)
    labels = np.zeros(1_000_000, np.uint8)
    labels[rng.choice(labels.size, 10, replace=False)] = 1
    scores = (rng.random(labels.size) + 0.5 * labels).astype(np.float32)
    scores = np.round(scores, 3)  # ties between the few positives and many negatives
    assert_close(ood_metrics(scores, labels), sklearn_ood(scores, labels))


def test_float16_scores_match_sklearn_on_the_same_values():
    rng = np.random.default_rng(5)
    scores, labels = random_case(rng, 100_000, 0.05, dtype=np.float16)
    assert np.unique(scores).size < 20_000  # float16 really creates ties
    assert_close(ood_metrics(scores, labels), sklearn_ood(scores, labels))


def test_tpr_exactly_at_95_percent_uses_that_threshold():
    # 20 outliers: the 19th highest (2) reaches TPR 19/20 = 0.95 exactly; 2 inliers are above.
    scores = np.concatenate([np.arange(20, 0, -1), [19.5, 10.5, 1.5, 0.5, 0.25]])
    labels = np.array([1] * 20 + [0] * 5, np.uint8)
    got = ood_metrics(scores.astype(np.float32), labels)
    assert got['fpr95'] == pytest.approx(2 / 5)
    assert_close(got, sklearn_ood(scores, labels))


def test_perfect_and_inverted_separation():
    rng = np.random.default_rng(6)
    labels = (rng.random(10_000) < 0.05).astype(np.uint8)
    scores = (rng.random(labels.size) + 2.0 * labels).astype(np.float32)
    assert_close(ood_metrics(scores, labels), {'ap': 1.0, 'auroc': 1.0, 'fpr95': 0.0})
    inverted = ood_metrics(-scores, labels)
    assert_close(inverted, {'auroc': 0.0, 'fpr95': 1.0})
    assert_close(inverted, sklearn_ood(-scores, labels))


def test_image_shaped_input_and_ignore_index():
    rng = np.random.default_rng(8)
    scores, labels = random_case(rng, 64 * 48, 0.1, decimals=2)
    scores, labels = scores.reshape(64, 48), labels.reshape(64, 48)
    labels[rng.random(labels.shape) < 0.3] = 255
    # Ignored pixels get the most extreme scores: counting them would change every metric.
    scores[labels == 255] = 100.0
    got = ood_metrics(scores, labels)
    assert_close(got, sklearn_ood(scores, labels))
    keep = labels != 255
    assert_close(got, sklearn_ood(scores[keep], labels[keep]))
    # Another ignore value, or none, on int labels.
    other = np.where(labels == 255, -1, labels.astype(np.int64))
    assert_close(ood_metrics(scores, other, ignore_index=-1), got)
    assert_close(ood_metrics(scores[keep], labels[keep], ignore_index=None), got)


def test_bool_labels_and_inputs_left_unchanged():
    rng = np.random.default_rng(9)
    scores, labels = random_case(rng, 5000, 0.2)
    before = scores.copy()
    assert_close(ood_metrics(scores, labels.astype(bool)), sklearn_ood(scores, labels))
    np.testing.assert_array_equal(scores, before)


def test_invalid_inputs_raise_value_error_with_a_message():
    scores = np.linspace(0, 1, 6, dtype=np.float32)
    with pytest.raises(ValueError, match=r'invalid label value\(s\) 2, 7'):
        ood_metrics(scores, np.array([0, 1, 2, 7, 255, 1]))
    with pytest.raises(ValueError, match='no outlier'):
        ood_metrics(scores, np.array([0, 0, 255, 0, 0, 0]))
    with pytest.raises(ValueError, match='no inlier'):
        ood_metrics(scores, np.array([1, 1, 1, 255, 1, 1]))
    with pytest.raises(ValueError, match='no outlier'):
        ood_metrics(scores, np.full(6, 255))
    with pytest.raises(ValueError, match=r'\(6,\).*\(2, 3\)'):
        ood_metrics(scores, np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match='finite'):
        ood_metrics(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match='finite'):
        ood_metrics(np.array([0.1, np.inf, 0.3]), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match='ignore_index'):
        ood_metrics(scores, np.array([0, 1, 0, 1, 0, 1]), ignore_index=1)
    # NaN on an ignored pixel is fine: it is dropped first.
    assert ood_metrics(np.array([0.1, np.nan, 0.9]), np.array([0, 255, 1]))['auroc'] == 1.0


def frames(seed, count, shape=(32, 40)):
    """Return lists of float32 score maps and uint8 label maps with ignore pixels."""
    rng = np.random.default_rng(seed)
    all_scores, all_labels = [], []
    for _ in range(count):
        labels = (rng.random(shape) < rng.uniform(0, 0.2)).astype(np.uint8)
        labels[rng.random(shape) < 0.1] = 255
        scores = np.round(rng.random(shape) + 0.7 * (labels == 1), 2).astype(np.float32)
        all_scores.append(scores)
        all_labels.append(labels)
    return all_scores, all_labels


def test_pooled_accumulator_equals_ood_metrics_on_the_concatenation():
    scores, labels = frames(10, 6)
    acc = OODAccumulator()
    for s, lab in zip(scores[:3], labels[:3]):
        acc.add(s, lab)
    assert_close(acc.compute(), ood_metrics(np.stack(scores[:3]), np.stack(labels[:3])))
    acc.add(np.stack(scores[3:]), np.stack(labels[3:]))  # a batch after a compute()
    want = sklearn_ood(np.stack(scores), np.stack(labels))
    got = acc.compute()
    assert_close(got, want)
    assert_close(acc.compute(), want)  # computing again changes nothing
    assert acc.images == 6
    assert acc.pixels == sum(int((lab != 255).sum()) for lab in labels)
    acc.reset()
    assert acc.pixels == 0 and acc.images == 0
    with pytest.raises(ValueError, match='no outlier'):
        acc.compute()


def test_pooled_accumulator_dtype_keeps_float64_exact():
    rng = np.random.default_rng(11)
    scores, labels = random_case(rng, 4000, 0.3, shift=1e-9, dtype=np.float64)
    scores = 1.0 + scores * 1e-9  # differences float32 cannot hold
    acc = OODAccumulator(dtype=np.float64)
    acc.add(scores[:1000], labels[:1000])
    acc.add(scores[1000:], labels[1000:])
    assert_close(acc.compute(), sklearn_ood(scores, labels))


def test_per_image_accumulator_averages_and_skips():
    scores, labels = frames(12, 5)
    labels[1][labels[1] == 1] = 0  # no outlier
    labels[3][:] = 255  # nothing left
    labels[4][labels[4] == 0] = 1  # no inlier
    acc = PerImageOODAccumulator()
    for s, lab in zip(scores, labels):
        acc.add(s, lab)
    got = acc.compute()
    assert (got['images_used'], got['images_skipped'], acc.images) == (2, 3, 5)
    per_image = [sklearn_ood(scores[i], labels[i]) for i in (0, 2)]
    assert_close(got, {k: np.mean([r[k] for r in per_image]) for k in ('ap', 'auroc')})
    # FPR95 by StreetHazards' own rule, not the first threshold reaching 95 %.
    assert_close(got, {'fpr95': np.mean([streethazards_fpr95(scores[i], labels[i])
                                         for i in (0, 2)])})
    pooled = ood_metrics(np.stack(scores[:3]), np.stack(labels[:3]))
    assert abs(got['ap'] - pooled['ap']) > 1e-4  # per-image really differs from pooled
    acc.reset()
    with pytest.raises(ValueError, match='no image'):
        acc.compute()


@pytest.mark.parametrize('seed', range(8))
def test_per_image_fpr95_follows_the_streethazards_rule_on_tied_scores(seed):
    # Scores rounded to one decimal: many ties, where the two FPR95 rules part.
    rng = np.random.default_rng(seed)
    labels = (rng.random(400) < 0.3).astype(np.uint8)
    scores = np.round(rng.normal(labels * 0.8, 0.5), 1).astype(np.float32)
    acc = PerImageOODAccumulator()
    acc.add(scores.reshape(20, 20), labels.reshape(20, 20))
    assert abs(acc.compute()['fpr95'] - streethazards_fpr95(scores, labels)) < 1e-12


def test_streethazards_rule_takes_the_closest_level_and_the_largest_fpr_there():
    # 20 outliers at distinct scores: TPR levels 1.0, 0.95, 0.9 ...; inliers tied with them.
    outliers = np.arange(20, dtype=np.float32)
    inliers = np.array([-1.0, 0.5, 1.0, 1.0, 1.0, 30.0], np.float32)
    scores = np.concatenate([outliers, inliers])
    labels = np.r_[np.ones(20, np.uint8), np.zeros(6, np.uint8)]
    acc = PerImageOODAccumulator()
    acc.add(scores[None], labels[None])
    # TPR 0.95 exactly: thresholds in (0, 1]; the lowest is 0.5, above which 5 inliers lie.
    assert acc.compute()['fpr95'] == pytest.approx(5 / 6)
    assert streethazards_fpr95(scores, labels) == pytest.approx(5 / 6)
    # The first threshold reaching TPR >= 0.95 is 1.0: 4 inliers at or above it.
    assert ood_metrics(scores, labels)['fpr95'] == pytest.approx(4 / 6)


def test_confusion_matrix_hand_example():
    cm = ConfusionMatrix(3)
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 19, 0, 2]], np.uint8)  # 19: open-set 'unknown'
    cm.add(pred, target)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [0, 0, 1]])
    np.testing.assert_array_equal(cm.unknown, [0, 0, 1])
    got = cm.compute()
    # class 0: tp 1, union 2; class 1: tp 2, union 3; class 2: tp 1, union 2 (unknown is a FN).
    np.testing.assert_allclose(got['iou'], [1 / 2, 2 / 3, 1 / 2])
    assert got['miou'] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert got['pixel_accuracy'] == pytest.approx(4 / 6)


def test_confusion_matrix_matches_sklearn_and_skips_absent_classes():
    rng = np.random.default_rng(13)
    num = 6
    cm = ConfusionMatrix(num)
    targets, preds = [], []
    for _ in range(3):
        target = rng.integers(0, num - 1, (40, 50)).astype(np.uint8)  # class 5 never in target
        target[rng.random(target.shape) < 0.1] = 255
        wrong = rng.integers(0, num - 2, target.shape)
        pred = np.where(rng.random(target.shape) < 0.6, target, wrong)
        pred = np.where(rng.random(target.shape) < 0.05, num, pred).astype(np.uint8)
        cm.add(pred, target)
        targets.append(target.ravel())
        preds.append(pred.ravel())
    target, pred = np.concatenate(targets), np.concatenate(preds)
    keep = target != 255
    full = confusion_matrix(target[keep], np.minimum(pred[keep], num), labels=range(num + 1))
    np.testing.assert_array_equal(cm.matrix, full[:num, :num])
    tp = np.diag(full)[:num]
    union = full[:num].sum(1) + full[:, :num].sum(0) - tp
    with np.errstate(invalid='ignore'):
        want_iou = tp / union
    got = cm.compute()
    np.testing.assert_allclose(got['iou'], want_iou)  # NaN where absent, in the same places
    assert np.isnan(got['iou'][5])
    assert got['miou'] == pytest.approx(np.nanmean(want_iou))
    assert got['pixel_accuracy'] == pytest.approx(tp.sum() / keep.sum())


def test_confusion_matrix_rejects_bad_input():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r'\(2, 2\).*\(4,\)'):
        cm.add(np.zeros((2, 2), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r'\[3\]'):
        cm.add(np.zeros(3, np.uint8), np.array([0, 3, 255], np.uint8))
    with pytest.raises(ValueError, match='integer'):
        cm.add(np.zeros(3, np.float32), np.zeros(3, np.uint8))
    cm.reset()
    assert np.isnan(cm.compute()['miou'])


def test_operating_point_reaches_the_requested_tpr_with_the_highest_threshold():
    rng = np.random.default_rng(7)
    labels = (rng.random(5000) < 0.1).astype(np.uint8)
    scores = (rng.random(5000) + labels * 0.5).astype(np.float32)
    scores[:50] = 0.75  # ties at the boundary region
    accumulator = OODAccumulator()
    accumulator.add(scores, labels)
    for tpr in (0.5, 0.95, 1.0):
        point = accumulator.operating_point(tpr)
        mask = scores > np.float32(point['threshold'])
        achieved = mask[labels == 1].mean()
        assert achieved >= tpr and achieved == pytest.approx(point['tpr'])
        assert mask[labels == 0].mean() == pytest.approx(point['fpr'])
        # Any higher threshold (the next distinct outlier score) falls short of the TPR.
        higher = np.unique(scores[labels == 1])
        higher = higher[higher > point['threshold']]
        assert (scores[labels == 1] > higher[0]).mean() < tpr
    with pytest.raises(ValueError, match='tpr'):
        accumulator.operating_point(0.0)
