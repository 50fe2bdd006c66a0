"""Eq. 4 on hand-made logits: which pixels enter CE and KL, the shared count, KL(U || P)."""

import math

import pytest
import torch

from dense_ood_ros.labels import IGNORE_INDEX
from train.losses import dequantize, kl_to_uniform, segmentation_loss, to_label_resolution


def _log_softmax_by_hand(values):
    top = max(values)
    log_sum = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - log_sum for v in values]


def test_kl_to_uniform_matches_a_hand_calculation():
    probs = [0.7, 0.2, 0.1]
    # KL(U || P) = sum_k (1/K) log((1/K) / p_k)
    expected = sum((1 / 3) * math.log((1 / 3) / p) for p in probs)
    log_probs = torch.tensor(probs, dtype=torch.float64).log().view(1, 3, 1, 1)
    assert kl_to_uniform(log_probs).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(-math.log(3) - sum(math.log(p) for p in probs) / 3)


def test_kl_to_uniform_is_zero_exactly_for_the_uniform_distribution():
    log_probs = torch.full((2, 5, 3, 4), -math.log(5), dtype=torch.float64)
    assert torch.allclose(kl_to_uniform(log_probs), torch.zeros(2, 3, 4, dtype=torch.float64))


def _one_row_case():
    """Four pixels in a row: inlier, pasted over a labelled pixel, ignore, pasted over ignore."""
    pixel_logits = [[2.0, 0.0, -1.0], [0.5, 3.0, 0.0], [1.0, 1.0, 1.0], [-2.0, 0.0, 4.0]]
    logits = torch.tensor(pixel_logits, dtype=torch.float64).t().reshape(1, 3, 1, 4)
    labels = torch.tensor([[[0, 1, IGNORE_INDEX, IGNORE_INDEX]]])
    mask = torch.tensor([[[False, True, False, True]]])
    return pixel_logits, logits, labels, mask


def test_pasted_pixels_leave_ce_and_only_they_enter_kl():
    pixel_logits, logits, labels, mask = _one_row_case()
    lam = 0.25
    log_p = [_log_softmax_by_hand(v) for v in pixel_logits]
    ce_inlier = -log_p[0][0]
    kl = [-math.log(3) - sum(lp) / 3 for lp in log_p]
    # N = 1 inlier + 2 pasted; pixel 2 (ignore, not pasted) enters nothing, and pixel 1's
    # label (class 1) is never used because it is pasted over.
    expected = (ce_inlier + lam * (kl[1] + kl[3])) / 3
    loss = segmentation_loss(logits, labels, mask, lam=lam, ignore_index=IGNORE_INDEX)
    assert loss.loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.num_inliers == 1 and loss.num_outliers == 2
    assert loss.ce.item() == pytest.approx(ce_inlier, rel=1e-6)
    assert loss.kl.item() == pytest.approx((kl[1] + kl[3]) / 2, rel=1e-6)


def test_gradients_reach_only_the_pixels_that_enter_a_term():
    _, logits, labels, mask = _one_row_case()
    logits.requires_grad_(True)
    segmentation_loss(logits, labels, mask, lam=0.25, ignore_index=IGNORE_INDEX).loss.backward()
    per_pixel = logits.grad.abs().sum(dim=1)[0, 0]
    assert per_pixel[0] > 0 and per_pixel[1] > 0 and per_pixel[3] > 0
    assert per_pixel[2] == 0


def test_changing_the_label_under_a_pasted_pixel_changes_nothing():
    _, logits, labels, mask = _one_row_case()
    other = labels.clone()
    other[0, 0, 1] = 2
    first = segmentation_loss(logits, labels, mask, lam=0.5, ignore_index=IGNORE_INDEX).loss
    second = segmentation_loss(logits, other, mask, lam=0.5, ignore_index=IGNORE_INDEX).loss
    assert first.item() == second.item()


def test_without_pasting_it_is_plain_mean_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, 0, :3] = IGNORE_INDEX
    mask = torch.zeros(2, 5, 6, dtype=torch.bool)
    loss = segmentation_loss(logits, labels, mask, lam=1.0, ignore_index=IGNORE_INDEX).loss
    expected = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_an_all_ignore_batch_gives_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    labels = torch.full((1, 2, 2), IGNORE_INDEX)
    loss = segmentation_loss(logits, labels, torch.zeros(1, 2, 2, dtype=torch.bool), lam=1e-3)
    assert loss.loss.item() == 0.0
    loss.loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_dequantisation_stays_inside_the_pixel_bin_and_follows_the_generator():
    patches = torch.tensor([0.0, 1.0, 128 / 255]).view(1, 3, 1, 1)
    first = dequantize(patches, generator=torch.Generator().manual_seed(3))
    again = dequantize(patches, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    bins = torch.tensor([0.0, 255.0, 128.0]).view(1, 3, 1, 1)
    assert torch.all(first >= bins / 256) and torch.all(first < (bins + 1) / 256)


def test_logits_go_to_the_label_resolution_bilinearly_and_the_mask_nearest():
    logits = torch.randn(2, 3, 8, 8)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, 2:4, 2:4] = True
    up, up_mask = to_label_resolution(logits, mask, (16, 16))
    expected = torch.nn.functional.interpolate(logits, size=(16, 16), mode='bilinear',
                                               align_corners=False)
    assert torch.equal(up, expected)
    assert up_mask.shape == (2, 16, 16) and int(up_mask.sum()) == 4 * int(mask.sum())
    assert up_mask[:, 4:8, 4:8].all()
    same, same_mask = to_label_resolution(logits, mask, (8, 8))
    assert same is logits and same_mask is mask
