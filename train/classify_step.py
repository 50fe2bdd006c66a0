"""One step of Algorithm 1: whole-image RealNVP outliers for an image classifier.

Lcls = CE(real batch) + lambda * mean KL(U || P) over a batch of flow samples (Eq. 2);
LRNVP = NLL of the real batch in bits/dim (Eq. 3). One backward of Lcls + LRNVP gives the
classifier grad(Lcls) and the flow grad(LRNVP) + grad(Lcls), as in the dense task.
"""

import torch.nn.functional as F

from train.losses import SegmentationLoss, flow_nll, kl_to_uniform
from train.outliers import make_patches
from train.step import Amp, Losses, apply_losses


def classification_loss(real_logits, labels, outlier_logits, *, lam):
    """Return Eq. 2 as a SegmentationLoss (the container Lseg uses; counts are images).

    ``loss = mean CE(real_logits, labels) + lam * mean KL(U || softmax(outlier_logits))``;
    ``outlier_logits`` None (mode 'none') leaves plain cross-entropy. Logits are promoted
    to float32 so AMP never computes the loss in reduced precision.
    """
    ce = F.cross_entropy(real_logits.float(), labels)
    kl = ce.new_zeros(())
    num_outliers = 0
    if outlier_logits is not None:
        # kl_to_uniform reduces over dim 1, the class axis of (N, K) logits too.
        kl = kl_to_uniform(F.log_softmax(outlier_logits.float(), dim=1)).mean()
        num_outliers = outlier_logits.shape[0]
    return SegmentationLoss(loss=ce + lam * kl, ce=ce.detach(), kl=kl.detach(),
                            num_inliers=real_logits.shape[0], num_outliers=num_outliers)


def compute_classify_losses(classifier, flow, images, labels, *, outliers, randomness,
                            normalize, amp=None):
    """Return the Losses of one batch of Algorithm 1 without touching any optimizer.

    `images` (N, 3, H, W) float in [0, 1], `labels` (N,) class ids; only the classifier
    runs under `amp`. Outliers are N whole H x W images: flow samples (mode 'rnvp', keeping
    their graph so Lcls reaches the flow) or Gaussian noise (mode 'noise'). Real images and
    outliers go through the classifier in two forward passes, as in Lee et al. 2018's code:
    the cross-entropy then never depends on the outliers through batch-norm statistics, so
    the flow's gradient from Lcls is the KL term's alone. `Losses.size` is the outlier side
    (0 without outliers).
    """
    amp = amp or Amp()
    batch, _, height, width = images.shape
    if height != width:
        raise ValueError(f'task classify needs square images, got {height}x{width}')
    samples = outlier_logits = None
    if outliers.pastes:
        # Outside autocast: the flow always runs in float32, as in the dense task.
        samples = make_patches(outliers, flow=flow, batch_size=batch, size=height,
                               generator=randomness.tensor, device=images.device)
    with amp.autocast():
        real_logits = classifier(normalize(images))
        if samples is not None:
            outlier_logits = classifier(normalize(samples))
    cls = classification_loss(real_logits, labels, outlier_logits, lam=outliers.lam)
    nll = None
    if outliers.mode == 'rnvp':
        nll = flow_nll(flow, images, generator=randomness.tensor)
    return Losses(seg=cls, nll=nll, size=height if outliers.pastes else 0)


def classify_step(classifier, flow, images, labels, *, outliers, randomness, optimizers,
                  normalize, amp=None, sync=None):
    """Run one joint update of Algorithm 1; return a train.step.StepResult.

    Everything after the forward pass (NaN guard, one backward, flow gradient averaging,
    AMP unscaling, both optimizer steps) is train.step.apply_losses, shared with Algorithm 2.
    """
    optimizers.zero_grad()
    losses = compute_classify_losses(classifier, flow, images, labels, outliers=outliers,
                                     randomness=randomness, normalize=normalize, amp=amp)
    return apply_losses(losses, flow=flow, optimizers=optimizers, sync=sync)
