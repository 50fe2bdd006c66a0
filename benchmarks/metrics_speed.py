"""Metrics speed: ood_metrics over sklearn computing the same curve once, on 50M float32 pixels.

The baseline is fair: like ood_metrics, which sorts once, sklearn sorts once. One
``roc_curve`` pass (one sort of the 50M scores) gives the per-threshold counts, and AP
(average_precision_score's step-wise sum), FPR95 and AUROC (``auc``, the trapezoid
roc_auc_score integrates) are derived from it. Calling average_precision_score, roc_curve
and roc_auc_score separately would sort three times; that is not what is timed. Before
timing, the derivation is checked against those three sklearn functions on a 1M-pixel slice.

Both are timed in one run on the same synthetic scores (a few percent outliers that score
higher on average, a third of the scores quantised to 3 decimals so ties across classes
occur). Ours runs before and after sklearn and its mean time is used. The figure is
sklearn time over ours; the results must agree to 1e-6. Goal: at least 3x.
"""

import argparse
import time

import numpy as np
from sklearn.metrics import auc, average_precision_score, roc_auc_score, roc_curve

from dense_ood_ros.metrics import ood_metrics

GOAL_SPEEDUP = 3.0
GOAL_DIFF = 1e-6


def make_data(pixels, outlier_fraction, seed=0):
    """Return flat float32 scores and uint8 labels (1 outlier, 0 inlier)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(pixels, dtype=np.float32) < outlier_fraction).astype(np.uint8)
    scores = rng.standard_normal(pixels, dtype=np.float32)
    scores += 1.5 * labels
    # Squash to (0, 1) like a softmax-based score, then quantise a third of the pixels.
    np.negative(scores, out=scores)
    np.exp(scores, out=scores)
    scores += 1
    np.reciprocal(scores, out=scores)
    quantised = rng.random(pixels, dtype=np.float32) < 1 / 3
    scores[quantised] = np.round(scores[quantised], 3)
    return scores, labels


def sklearn_metrics(scores, labels):
    """Return {'ap', 'fpr95', 'auroc'} from one sklearn roc_curve pass (one sort)."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    n_pos = np.count_nonzero(labels)
    n_neg = labels.size - n_pos
    # The counts behind the rates, exact again after rounding (they are integers); index 0
    # is roc_curve's extra (0, 0) point above the highest score.
    tps = np.rint(tpr[1:] * n_pos)
    fps = np.rint(fpr[1:] * n_neg)
    # average_precision_score: sum over thresholds of recall increase times precision.
    ap = float(np.sum(np.diff(tpr) * (tps / (tps + fps))))
    return {'ap': ap, 'fpr95': float(fpr[np.argmax(tpr >= 0.95)]), 'auroc': float(auc(fpr, tpr))}


def sklearn_three_calls(scores, labels):
    """Return {'ap', 'fpr95', 'auroc'} the usual way: three sklearn calls, three sorts."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return {'ap': average_precision_score(labels, scores),
            'fpr95': float(fpr[np.argmax(tpr >= 0.95)]),
            'auroc': roc_auc_score(labels, scores)}


def check_baseline(scores, labels, pixels=1_000_000):
    """Raise if the one-pass derivation differs from sklearn's own functions on a slice."""
    derived = sklearn_metrics(scores[:pixels], labels[:pixels])
    official = sklearn_three_calls(scores[:pixels], labels[:pixels])
    diff = max(abs(derived[key] - official[key]) for key in official)
    if diff > 1e-9:
        raise SystemExit(f'metrics_speed: the one-pass sklearn baseline differs from '
                         f'the sklearn functions by {diff:.1e}: {derived} vs {official}')


def _timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main():
    """Run the benchmark and print one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--pixels', type=int, default=50_000_000)
    parser.add_argument('--outlier-fraction', type=float, default=0.03)
    args = parser.parse_args()
    scores, labels = make_data(args.pixels, args.outlier_fraction)
    check_baseline(scores, labels)
    ours, ours_s1 = _timed(ood_metrics, scores, labels)
    reference, sklearn_s = _timed(sklearn_metrics, scores, labels)
    _, ours_s2 = _timed(ood_metrics, scores, labels)
    ours_s = (ours_s1 + ours_s2) / 2
    speedup = sklearn_s / ours_s
    diff = max(abs(ours[key] - reference[key]) for key in reference)
    verdict = 'meets' if speedup >= GOAL_SPEEDUP and diff <= GOAL_DIFF else 'MISSES'
    print(f'metrics_speed: speedup = {speedup:.2f}x over sklearn computing the curve once '
          f'(one roc_curve sort, AP/FPR95/AUROC derived), max |diff| = {diff:.1e} '
          f'(ours {ours_s:.2f} s, sklearn {sklearn_s:.2f} s, {args.pixels / 1e6:g}M pixels, '
          f'{labels.mean():.1%} outliers, {np.unique(scores).size / 1e6:.1f}M distinct '
          f'scores); goal >= {GOAL_SPEEDUP:g}x and <= {GOAL_DIFF:g}: {verdict}')


if __name__ == '__main__':
    main()
