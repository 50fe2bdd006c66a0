"""The losses of joint training: Eq. 4 (dense CE + lambda * KL to uniform) and Eq. 3's NLL."""

import dataclasses
import math

import torch
import torch.nn.functional as F

from dense_ood_ros.labels import IGNORE_INDEX


@dataclasses.dataclass
class SegmentationLoss:
    """Lseg and its parts; `loss` is what backpropagates, the rest is for logging.

    `ce` is the mean cross-entropy over inlier pixels and `kl` the mean KL(U || P) over
    pasted pixels (NaN-free zeros when a set is empty); `num_inliers` and `num_outliers`
    count the pixels of each term. `ce_sum` and `kl_sum` are the two sums of Eq. 4 with
    their graph (lambda not applied), for what reaches the flow; `entropy` is the mean
    softmax entropy (nats) on pasted pixels, detached. The three are None where a loss has
    no such parts (Algorithm 1's).
    """

    loss: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor
    num_inliers: int
    num_outliers: int
    ce_sum: torch.Tensor = None
    kl_sum: torch.Tensor = None
    entropy: torch.Tensor = None


def kl_to_uniform(log_probs):
    """Return KL(U || P) per pixel, (N, H, W), from log-probabilities (N, K, H, W).

    KL(U || P) = sum_k (1/K) log((1/K) / P_k) = -log K - (1/K) sum_k log P_k.
    """
    num_classes = log_probs.shape[1]
    return -math.log(num_classes) - log_probs.mean(dim=1)


def to_label_resolution(logits, outlier_mask, size):
    """Return logits (bilinear) and the outlier mask (nearest) at the label size `size`.

    The paper upsamples LDN's output bilinearly to the label resolution it keeps; where the
    sizes already match nothing is computed, so such runs are unchanged bit for bit.
    """
    size = tuple(size)
    if tuple(logits.shape[-2:]) == size:
        return logits, outlier_mask
    logits = F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
    outlier_mask = F.interpolate(outlier_mask[:, None].float(), size=size,
                                 mode='nearest')[:, 0].bool()
    return logits, outlier_mask


def segmentation_loss(logits, labels, outlier_mask, *, lam, ignore_index=IGNORE_INDEX):
    """Return Eq. 4 with both sums divided by one pixel count N.

    Lseg = (sum_{s_ij = 0, y_ij != ignore} CE_ij + lam * sum_{s_ij = 1} KL(U || P_ij)) / N,
    N = number of pixels entering either sum. Pasted pixels (`outlier_mask` True) never
    enter the cross-entropy, whatever label lies under them; ignore pixels enter neither.
    `logits` (N, K, H, W) are promoted to float32 so that AMP never computes the loss in
    reduced precision; `labels` (N, H, W) are integer class ids.
    """
    log_probs = F.log_softmax(logits.float(), dim=1)
    outlier_mask = outlier_mask.bool()
    inliers = (labels != ignore_index) & ~outlier_mask
    # Gather with a safe class id where the label is ignore (the value is masked out after).
    targets = torch.where(inliers, labels, torch.zeros_like(labels)).long()
    ce = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    kl = kl_to_uniform(log_probs)
    # torch.where rather than multiplication: a masked-out inf would turn 0 * inf into NaN.
    ce_sum = torch.where(inliers, ce, torch.zeros_like(ce)).sum()
    kl_sum = torch.where(outlier_mask, kl, torch.zeros_like(kl)).sum()
    num_inliers = int(inliers.sum())
    num_outliers = int(outlier_mask.sum())
    count = max(num_inliers + num_outliers, 1)
    loss = (ce_sum + lam * kl_sum) / count
    with torch.no_grad():
        # H(P) = -sum_k P_k log P_k; a logged diagnostic, never part of the loss.
        entropy = -(log_probs.exp() * log_probs).sum(dim=1)
        entropy = torch.where(outlier_mask, entropy, torch.zeros_like(entropy)).sum()
    return SegmentationLoss(
        loss=loss,
        ce=ce_sum.detach() / max(num_inliers, 1),
        kl=kl_sum.detach() / max(num_outliers, 1),
        num_inliers=num_inliers,
        num_outliers=num_outliers,
        ce_sum=ce_sum, kl_sum=kl_sum, entropy=entropy / max(num_outliers, 1))


def dequantize(patches, *, generator):
    """Return ``(255 * x + u) / 256``, u ~ U[0, 1), for 8-bit images x in [0, 1].

    Done here rather than inside RealNVP.nll_bits_per_dim so that the noise comes from the
    training step's own (checkpointed) generator and a resumed run draws the same values.
    """
    noise = torch.rand(patches.shape, generator=generator, device=patches.device,
                       dtype=patches.dtype)
    return (255.0 * patches + noise) / 256.0


def flow_nll(flow, patches, *, generator):
    """Return Eq. 3 in bits per dimension: the flow's NLL of the replaced real patches x'."""
    return flow.nll_bits_per_dim(dequantize(patches.detach(), generator=generator),
                                 dequantize=False)
