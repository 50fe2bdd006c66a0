"""Exact anomaly-segmentation metrics (AP, FPR95, AUROC) and confusion-matrix mIoU in numpy.

open_set_metrics gives the image-wide metrics of the paper's Table 1 (TNR at TPR 95 %, AUROC,
detection accuracy) in their own convention: in-distribution positive, scores confidences.
"""

import numpy as np

OOD_KEYS = ('ap', 'fpr95', 'auroc')

# FPR95: the false-positive rate where the true-positive rate first reaches 95 %.
TPR_TARGET = 0.95


def _check_ignore_index(ignore_index):
    if ignore_index is not None and ignore_index in (0, 1):
        raise ValueError(f'ignore_index must not be 0 or 1 (the inlier and outlier labels), '
                         f'got {ignore_index}')


def _as_scores(scores):
    scores = np.asarray(scores)
    kind = scores.dtype.kind
    if kind == 'f':
        # float16 -> float32 is exact (so ties and order are kept) and numpy sorts float32
        # much faster; float32 and float64 are kept as they are: no float64 copy of float32.
        return scores.astype(np.float32) if scores.dtype == np.float16 else scores
    if kind in 'biu':
        # Exact for integers up to 2**24 (float32) or 2**53 (float64).
        return scores.astype(np.float32 if scores.dtype.itemsize <= 2 else np.float64)
    raise ValueError(f'scores must be real numbers, got dtype {scores.dtype}')


def _split(scores, labels, ignore_index):
    """Return (outlier scores, inlier scores) as new 1-D arrays, ignore pixels dropped."""
    scores = _as_scores(scores)
    labels = np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f'scores shape {scores.shape} does not match labels shape '
                         f'{labels.shape}')
    positive = labels == 1
    negative = labels == 0
    n_kept = np.count_nonzero(positive) + np.count_nonzero(negative)
    ignored = (labels == ignore_index) if ignore_index is not None else None
    n_ignored = 0 if ignored is None else np.count_nonzero(ignored)
    if n_kept + n_ignored != labels.size:
        # Only the error path pays for finding the offending values.
        valid = positive | negative
        if ignored is not None:
            valid |= ignored
        bad = np.unique(labels[~valid])
        shown = ', '.join(str(v) for v in bad[:8].tolist()) + (', ...' if bad.size > 8 else '')
        raise ValueError(f'labels must be 1 (outlier), 0 (inlier) or ignore_index='
                         f'{ignore_index}; found invalid label value(s) {shown}')
    return scores[positive], scores[negative]


def _check_finite(sorted_scores):
    # NaN sorts last and +-inf to the ends, so the two ends of a sorted array decide.
    if sorted_scores.size and not (np.isfinite(sorted_scores[0])
                                   and np.isfinite(sorted_scores[-1])):
        raise ValueError('scores must be finite: found NaN or infinity at a non-ignored pixel')


class UndefinedMetricError(ValueError):
    """The data lacks outlier or inlier pixels, so AP, FPR95 and AUROC are undefined."""


def _check_not_degenerate(n_pos, n_neg):
    if n_pos == 0:
        raise UndefinedMetricError('no outlier (label 1) pixels left after dropping '
                                   'ignore_index: AP, FPR95 and AUROC are undefined')
    if n_neg == 0:
        raise UndefinedMetricError('no inlier (label 0) pixels left after dropping '
                                   'ignore_index: AP, FPR95 and AUROC are undefined')


def _metrics_from_sorted(pos, neg):
    """Return the OOD metrics of ascending-sorted outlier and inlier score arrays.

    Ties are grouped by distinct score value exactly as sklearn groups them by distinct
    threshold. Only thresholds equal to an outlier score change the TPR, so AP and FPR95 are
    sums and picks over the distinct outlier scores, and AUROC (the trapezoid over the ROC
    with tied groups as diagonal segments) equals the Mann-Whitney statistic with ties
    counted one half. Inliers are only ever counted by binary search into their sorted run.
    """
    n_pos, n_neg = pos.size, neg.size
    starts, counts, tps, fps, neg_below, neg_at_or_below = _roc_groups(pos, neg)
    # AP: step-wise sum of (recall increase) * precision over thresholds, as sklearn.
    ap = float(np.sum(counts * (tps / (tps + fps))) / n_pos)
    # Same float expression as sklearn's tpr = tps / tps[-1], so the >= test agrees exactly.
    # The TPR falls with the threshold value, so reaching the target is a prefix of groups;
    # scanning thresholds from high to low, the first one reaching it is the prefix's last.
    reached = np.count_nonzero(tps / n_pos >= TPR_TARGET)
    fpr95 = float(fps[reached - 1] / n_neg)
    # float64 avoids int64 overflow for billions of pixels; 1e-16 relative error is harmless.
    ranks = neg_below.astype(np.float64) + neg_at_or_below
    auroc = float(np.dot(counts.astype(np.float64), ranks) / (2.0 * n_pos * n_neg))
    return {'ap': ap, 'fpr95': fpr95, 'auroc': auroc}


def _fpr_at_recall_closest(pos, neg, level=TPR_TARGET):
    """Return the FPR by StreetHazards' own rule (anomaly-seg's ``fpr_and_fdr_at_recall``).

    That rule takes the TPR level closest to `level` among the thresholds from the highest
    one keeping every outlier upward (ties between two levels go to the higher TPR), and at
    that level the lowest threshold, i.e. the largest FPR. Per distinct outlier score v_i
    (ascending) the TPR of thresholds in (v_{i-1}, v_i] is constant and the lowest of them
    counts the inliers above v_{i-1}; for v_0 the threshold is v_0 itself.
    """
    n_pos, n_neg = pos.size, neg.size
    starts, _, tps, _, neg_below, neg_at_or_below = _roc_groups(pos, neg)
    recall = tps / n_pos
    fps = np.empty(starts.size, dtype=np.int64)
    fps[0] = n_neg - neg_below[0]
    fps[1:] = n_neg - neg_at_or_below[:-1]
    # argmin takes the first minimum: ascending thresholds, so the higher TPR wins a tie.
    cutoff = int(np.argmin(np.abs(recall - level)))
    return float(fps[cutoff] / n_neg)


def _roc_groups(pos, neg):
    """Return per distinct positive score: (first index, count, TP, FP, negatives below, at).

    TP and FP count the scores >= that value; ``pos`` and ``neg`` are sorted ascending.
    """
    n_pos, n_neg = pos.size, neg.size
    _check_not_degenerate(n_pos, n_neg)
    _check_finite(pos)
    _check_finite(neg)
    # First index of each distinct outlier score (ascending).
    change = np.empty(n_pos, dtype=bool)
    change[0] = True
    np.not_equal(pos[1:], pos[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    values = pos[starts]
    counts = np.diff(starts, append=n_pos)
    neg_below = np.searchsorted(neg, values, side='left')
    neg_at_or_below = np.searchsorted(neg, values, side='right')
    # Confusion counts at threshold "score >= value", in int64 (exact).
    tps = n_pos - starts
    fps = n_neg - neg_below
    return starts, counts, tps, fps, neg_below, neg_at_or_below


def ood_metrics(scores, labels, ignore_index=255):
    """Return {'ap', 'fpr95', 'auroc'} (fractions) of anomaly scores against outlier labels.

    ``labels`` are 1 for outlier (positive) pixels, 0 for inliers and ``ignore_index`` for
    pixels to drop; any other value raises ValueError. ``scores`` has the labels' shape, any
    real dtype; higher means more anomalous. AP equals sklearn's ``average_precision_score``,
    AUROC its ``roc_auc_score`` and FPR95 is the false-positive rate at the first threshold,
    scanning distinct score values from high to low, whose TPR is at least 0.95, the way
    ``roc_curve(drop_intermediate=False)`` lists them; ties are handled as sklearn does.

    Cost: one in-place sort of the inlier scores and one of the outlier scores, in their own
    dtype (float16 is widened to float32, exactly), no argsort and no float64 copy of
    float32 data; 4 bytes per float32 pixel on top of the inputs, plus boolean masks.
    """
    _check_ignore_index(ignore_index)
    pos, neg = _split(scores, labels, ignore_index)
    _check_not_degenerate(pos.size, neg.size)
    pos.sort()
    neg.sort()
    return _metrics_from_sorted(pos, neg)


def open_set_metrics(inlier_scores, outlier_scores):
    """Return Table 1's {'tnr_at_tpr95', 'auroc', 'detection_accuracy'} (fractions).

    Convention of Hendrycks & Gimpel 2017, Liang et al. 2018 (ODIN) and Lee et al. 2018, the
    reverse of ood_metrics': in-distribution images are the positives and scores are
    confidences, higher meaning more in-distribution (e.g. the max softmax probability).
    With thresholds d on "score >= d", scanned over the distinct scores as sklearn's
    ``roc_curve(y_true=in, y_score=score, drop_intermediate=False)`` lists them:

    - tnr_at_tpr95: 1 - FPR at the first threshold, from high to low, whose TPR >= 0.95 (the
      fraction of outliers rejected while 95 % of inliers are kept); equals 1 - fpr95 of
      ood_metrics with the roles swapped.
    - auroc: sklearn's ``roc_auc_score`` (ties count one half).
    - detection_accuracy: max over d of 0.5 P_in(score >= d) + 0.5 P_out(score < d), that is
      1 - min_d of Liang et al.'s detection error; the max over roc_curve's points of
      0.5 * (tpr + 1 - fpr). Always at least 0.5 (accept or reject everything).
    """
    pos = np.sort(_as_scores(inlier_scores).ravel())
    neg = np.sort(_as_scores(outlier_scores).ravel())
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f'open-set metrics need in-distribution and outlier scores, got '
                         f'{pos.size} and {neg.size}')
    ranking = _metrics_from_sorted(pos, neg)
    _, _, tps, fps, _, _ = _roc_groups(pos, neg)
    balanced = 0.5 * (tps / pos.size + 1.0 - fps / neg.size)
    return {'tnr_at_tpr95': 1.0 - ranking['fpr95'], 'auroc': ranking['auroc'],
            'detection_accuracy': float(max(0.5, balanced.max()))}


def _images(scores, labels):
    """Yield (scores, labels) per image: (H, W) or 1-D is one image, (N, H, W) is N."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.shape != labels.shape:
        raise ValueError(f'scores shape {scores.shape} does not match labels shape '
                         f'{labels.shape}')
    if scores.ndim > 3:
        raise ValueError(f'expected one (H, W) image or an (N, H, W) batch, got shape '
                         f'{scores.shape}')
    if scores.ndim == 3:
        yield from zip(scores, labels)
    else:
        yield scores, labels


class OODAccumulator:
    """Pool anomaly scores over many frames; compute() equals ood_metrics on all of them.

    add() drops ignore pixels at once and files each kept score under its class, so labels
    are not stored: memory is 4 bytes per kept pixel with the default float32 (8 with
    float64), e.g. 800 MB for 100 Cityscapes frames of 2048x1024. compute() gathers each
    class into one array (freeing the chunks as it copies, so the peak is that array plus one
    chunk), sorts it in place and keeps it sorted for the next compute() or add().

    Scores are stored as ``dtype``: float16 and float32 inputs are kept exactly with the
    default float32; float64 inputs are rounded to float32 unless ``dtype=np.float64``.
    Each add() call is one image, or N images for an (N, H, W) batch (the ``images``
    counter); ``pixels`` counts kept (non-ignored) pixels.
    """

    def __init__(self, ignore_index=255, dtype=np.float32):
        _check_ignore_index(ignore_index)
        self.ignore_index = ignore_index
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != 'f':
            raise ValueError(f'dtype must be a floating type, got {self.dtype}')
        self.reset()

    def reset(self):
        """Forget everything added."""
        self._chunks = {1: [], 0: []}
        self._sorted = {1: np.empty(0, self.dtype), 0: np.empty(0, self.dtype)}
        self.pixels = 0
        self.images = 0

    def add(self, scores, labels):
        """Add the scores and labels of one (H, W) image or an (N, H, W) batch."""
        for image_scores, image_labels in _images(scores, labels):
            pos, neg = _split(image_scores, image_labels, self.ignore_index)
            self._chunks[1].append(pos.astype(self.dtype, copy=False))
            self._chunks[0].append(neg.astype(self.dtype, copy=False))
            self.pixels += pos.size + neg.size
            self.images += 1

    def _gather(self, label):
        chunks = self._chunks[label]
        if chunks:
            merged = np.empty(self._sorted[label].size + sum(c.size for c in chunks),
                              self.dtype)
            merged[:self._sorted[label].size] = self._sorted[label]
            offset = self._sorted[label].size
            self._sorted[label] = None
            while chunks:
                chunk = chunks.pop(0)
                merged[offset:offset + chunk.size] = chunk
                offset += chunk.size
            merged.sort()
            self._sorted[label] = merged
        return self._sorted[label]

    def compute(self):
        """Return {'ap', 'fpr95', 'auroc'} over every pixel added since reset()."""
        pos, neg = self._gather(1), self._gather(0)
        return _metrics_from_sorted(pos, neg)

    def operating_point(self, tpr):
        """Return the largest threshold whose mask (score > threshold) reaches `tpr`.

        Returns {'threshold', 'tpr', 'fpr'} measured on the pooled pixels: the calibrated
        operating point the node's anomaly mask uses.
        """
        if not 0.0 < tpr <= 1.0:
            raise ValueError(f'tpr must lie in (0, 1], got {tpr}')
        pos, neg = self._gather(1), self._gather(0)
        _check_not_degenerate(pos.size, neg.size)
        # The k highest outlier scores must lie strictly above the threshold.
        needed = int(np.ceil(tpr * pos.size - 1e-9))
        kth_highest = pos[pos.size - needed]
        threshold = np.nextafter(kth_highest, -np.inf, dtype=pos.dtype)
        above_pos = pos.size - np.searchsorted(pos, threshold, side='right')
        above_neg = neg.size - np.searchsorted(neg, threshold, side='right')
        return {'threshold': float(threshold), 'tpr': above_pos / pos.size,
                'fpr': above_neg / neg.size}


class PerImageOODAccumulator:
    """Average per-image AP, FPR95 and AUROC over images (the StreetHazards protocol).

    Each image is scored as it is added and only its three numbers are kept: AP and AUROC as
    ood_metrics computes them, FPR95 by the benchmark's own rule (_fpr_at_recall_closest:
    the TPR level closest to 95 %, the largest FPR there), so the mean compares with
    published StreetHazards numbers; pooled data sets keep the first threshold reaching 95 %.
    Images without an outlier pixel, or without an inlier pixel, after dropping
    ``ignore_index`` have undefined metrics and are skipped; compute() reports how many
    images were used and skipped. Each add() call is one image, or N for an (N, H, W) batch.
    """

    def __init__(self, ignore_index=255):
        _check_ignore_index(ignore_index)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self):
        """Forget everything added."""
        self.results = []
        self.pixels = 0
        self.images = 0
        self.skipped = 0

    def add(self, scores, labels):
        """Score one (H, W) image or each image of an (N, H, W) batch."""
        for image_scores, image_labels in _images(scores, labels):
            pos, neg = _split(image_scores, image_labels, self.ignore_index)
            self.pixels += pos.size + neg.size
            self.images += 1
            if pos.size == 0 or neg.size == 0:
                self.skipped += 1
                continue
            pos.sort()
            neg.sort()
            metrics = _metrics_from_sorted(pos, neg)
            metrics['fpr95'] = _fpr_at_recall_closest(pos, neg)
            self.results.append(metrics)

    def compute(self):
        """Return the mean 'ap', 'fpr95', 'auroc' and the 'images_used', 'images_skipped'."""
        if not self.results:
            raise UndefinedMetricError(f'no image with both outlier and inlier pixels among '
                                       f'the {self.images} added: per-image metrics are '
                                       'undefined')
        summary = {key: float(np.mean([r[key] for r in self.results])) for key in OOD_KEYS}
        summary['images_used'] = len(self.results)
        summary['images_skipped'] = self.skipped
        return summary


class ConfusionMatrix:
    """Accumulate a semantic-segmentation confusion matrix and report IoU and mIoU.

    Rows are target classes, columns predictions. Pixels whose target is ``ignore_index``
    are dropped; other targets must lie in [0, num_classes). Predictions at or above
    ``num_classes`` (such as an open-set 'unknown' id) are wrong for every class: they are
    counted in an extra column, so they add to the target class's false negatives (lowering
    its IoU and the pixel accuracy) but are nobody's false positive. ``matrix`` is the
    (C, C) part, ``unknown`` the per-target-class count of those predictions.
    """

    def __init__(self, num_classes, ignore_index=255):
        if int(num_classes) < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self):
        """Zero the counts."""
        self._counts = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    @property
    def matrix(self):
        """Return the (C, C) counts, rows target, columns prediction."""
        return self._counts[:, :self.num_classes].copy()

    @property
    def unknown(self):
        """Return per target class the count of predictions >= num_classes."""
        return self._counts[:, self.num_classes].copy()

    def add(self, pred, target):
        """Count the integer class maps ``pred`` and ``target`` (same shape)."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f'pred shape {pred.shape} does not match target shape '
                             f'{target.shape}')
        for name, array in (('pred', pred), ('target', target)):
            if array.dtype.kind not in 'biu':
                raise ValueError(f'{name} must hold integer class ids, got dtype {array.dtype}')
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            pred, target = pred[keep], target[keep]
        else:
            pred, target = pred.ravel(), target.ravel()
        if target.size == 0:
            return
        num = self.num_classes
        if target.min() < 0 or target.max() >= num:
            bad = np.unique(target[(target < 0) | (target >= num)])
            raise ValueError(f'target values must be in [0, {num}) or ignore_index='
                             f'{self.ignore_index}; found {bad[:8].tolist()}')
        if pred.min() < 0:
            raise ValueError(f'pred values must be non-negative; found {pred.min()}')
        # intp before multiplying: uint8 maps would overflow at target * (num + 1).
        index = target.astype(np.intp) * (num + 1) + np.minimum(pred, num).astype(np.intp)
        self._counts += np.bincount(index, minlength=num * (num + 1)).reshape(num, num + 1)

    def compute(self):
        """Return {'miou', 'iou', 'pixel_accuracy'} of the counts so far.

        'iou' is the per-class list, NaN for a class absent from both target and prediction;
        'miou' is the mean over the classes present in either (the usual nanmean).
        """
        num = self.num_classes
        true_pos = np.diag(self._counts[:, :num]).astype(np.float64)
        target_total = self._counts.sum(axis=1)
        pred_total = self._counts[:, :num].sum(axis=0)
        union = (target_total + pred_total).astype(np.float64) - true_pos
        iou = np.full(num, np.nan)
        present = union > 0
        iou[present] = true_pos[present] / union[present]
        total = int(target_total.sum())
        return {
            'miou': float(iou[present].mean()) if present.any() else float('nan'),
            'iou': iou.tolist(),
            'pixel_accuracy': float(true_pos.sum() / total) if total else float('nan'),
        }
