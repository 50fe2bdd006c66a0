"""One step of Algorithm 2: paste outliers, compute Lseg and the flow's NLL, update both.

The update after the forward pass (apply_losses) also serves Algorithm 1 (train.classify_step).
"""

import contextlib
import dataclasses
import math

import numpy as np
import torch

from dense_ood_ros.labels import IGNORE_INDEX
from train.losses import flow_nll, segmentation_loss
from train.outliers import draw_size, make_patches
from train.paste import fit_size, paste, random_positions

# Stream ids that keep the step's random draws apart from each other and from data loading.
_SIZE_STREAM, _POSITION_STREAM, _TENSOR_STREAM = 1, 2, 3


@dataclasses.dataclass
class StepRandomness:
    """The generators of one training step.

    `size` (CPU) picks the outlier side and is the same on every process, so all ranks of
    a distributed run paste the same size; `position` (CPU) places the patches; `tensor`
    (on the training device) draws z, noise patches and the dequantisation noise.
    """

    size: torch.Generator
    position: torch.Generator
    tensor: torch.Generator


def _seeded(entropy, device='cpu'):
    seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(seed)


def step_randomness(seed, iteration, *, rank=0, device='cpu'):
    """Return the generators of step `iteration`: a pure function of (seed, iteration, rank).

    Deriving them rather than carrying one generator along is what makes resuming exact:
    the checkpointed (seed, iteration) reproduce every draw the interrupted run would have
    made, whatever happened before, on any number of processes.
    """
    return StepRandomness(
        size=_seeded([seed, _SIZE_STREAM, iteration]),
        position=_seeded([seed, _POSITION_STREAM, iteration, rank]),
        tensor=_seeded([seed, _TENSOR_STREAM, iteration, rank], device=torch.device(device)))


class Normalizer:
    """ImageNet-style ``(x - mean) / std`` for (N, 3, H, W) images in [0, 1]."""

    def __init__(self, mean, std, *, device='cpu'):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, images):
        """Return the normalised images."""
        return (images - self.mean) / self.std


@dataclasses.dataclass
class Amp:
    """Autocast settings for the segmenter; `dtype` None means full precision."""

    device_type: str = 'cpu'
    dtype: torch.dtype = None

    def autocast(self):
        """Return the autocast context of the segmenter's forward pass."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@dataclasses.dataclass
class Losses:
    """The differentiable losses of one step and what was pasted."""

    seg: object           # train.losses.SegmentationLoss
    nll: torch.Tensor     # LRNVP in bits/dim, None unless mode == 'rnvp'
    size: int             # pasted side length, 0 when nothing was pasted

    @property
    def total(self):
        """Return Lseg + LRNVP: one backward gives each model exactly its gradients.

        The segmenter only appears in Lseg (x' is detached), so it receives grad(Lseg);
        the flow receives grad(LRNVP) + grad(Lseg) through the pasted pixels.
        """
        return self.seg.loss if self.nll is None else self.seg.loss + self.nll


def compute_losses(segmenter, flow, images, labels, *, outliers, randomness, normalize,
                   amp=None, ignore_index=IGNORE_INDEX):
    """Return the Losses of one batch without touching any optimizer.

    `images` (N, 3, H, W) are float in [0, 1] (not yet normalised), `labels` (N, H, W)
    integer class ids. The flow always runs in float32 (its log-determinants sum over
    every pixel); only the segmenter runs under `amp`.
    """
    amp = amp or Amp()
    batch, _, height, width = images.shape
    mask = torch.zeros((batch, height, width), dtype=torch.bool, device=images.device)
    size, replaced = 0, None
    if outliers.pastes:
        divisor = flow.size_divisor if outliers.mode == 'rnvp' else 1
        size = fit_size(draw_size(outliers.sizes, generator=randomness.size), height, width,
                        divisor=divisor)
        positions = random_positions(batch, size, height, width,
                                     generator=randomness.position)
        patches = make_patches(outliers, flow=flow, batch_size=batch, size=size,
                               generator=randomness.tensor, device=images.device)
        pasted = paste(images, patches, positions)
        images, mask, replaced = pasted.images, pasted.mask, pasted.replaced
    with amp.autocast():
        logits = segmenter(normalize(images))
    seg = segmentation_loss(logits, labels, mask, lam=outliers.lam, ignore_index=ignore_index)
    nll = None
    if outliers.mode == 'rnvp':
        nll = flow_nll(flow, replaced, generator=randomness.tensor)
    return Losses(seg=seg, nll=nll, size=size)


@dataclasses.dataclass
class Optimizers:
    """The segmenter's and the flow's optimizers and the (possibly disabled) AMP scaler."""

    segmenter: torch.optim.Optimizer
    flow: torch.optim.Optimizer = None
    scaler: torch.amp.GradScaler = None

    def all(self):
        """Return the optimizers that exist."""
        return [opt for opt in (self.segmenter, self.flow) if opt is not None]

    def zero_grad(self):
        """Drop every gradient (set to None, so a skipped step leaves nothing behind)."""
        for opt in self.all():
            opt.zero_grad(set_to_none=True)


class LocalSync:
    """Single-process stand-in for train.distributed.ProcessGroupSync."""

    def all_true(self, flag):
        """Return `flag`: no other process to agree with."""
        return bool(flag)

    def average_gradients(self, parameters):
        """Do nothing: there is nobody to average with."""


@dataclasses.dataclass
class StepResult:
    """Scalars of one step; `skipped` is True when a loss was NaN or infinite."""

    skipped: bool
    loss: float
    ce: float
    kl: float
    nll: float
    size: int


def train_step(segmenter, flow, images, labels, *, outliers, randomness, optimizers,
               normalize, amp=None, sync=None, ignore_index=IGNORE_INDEX):
    """Run one joint update; return a StepResult.

    Order: drop old gradients, forward, agree across processes that every loss is finite
    (otherwise return skipped, gradients cleared, no optimizer step), one backward of
    Lseg + LRNVP, average the flow's gradients across processes (DDP does the segmenter's),
    unscale both optimizers so no AMP loss scale survives on either model's gradients,
    then step both and update the scaler once.
    """
    optimizers.zero_grad()
    losses = compute_losses(segmenter, flow, images, labels, outliers=outliers,
                            randomness=randomness, normalize=normalize, amp=amp,
                            ignore_index=ignore_index)
    return apply_losses(losses, flow=flow, optimizers=optimizers, sync=sync)


def apply_losses(losses, *, flow, optimizers, sync=None):
    """Back-propagate a step's Losses and step both optimizers; return a StepResult.

    The part of a joint update after the forward pass, shared by both tasks (train_step here,
    train.classify_step for Algorithm 1); gradients must have been cleared before the
    forward pass.
    """
    sync = sync or LocalSync()
    total = losses.total
    values = [total.detach(), losses.seg.ce, losses.seg.kl]
    if losses.nll is not None:
        values.append(losses.nll.detach())
    finite = bool(torch.isfinite(torch.stack([v.float() for v in values])).all())
    result = StepResult(
        skipped=False, loss=float(losses.seg.loss.detach()), ce=float(losses.seg.ce),
        kl=float(losses.seg.kl) if losses.size else math.nan,
        nll=float(losses.nll.detach()) if losses.nll is not None else math.nan,
        size=losses.size)
    if not sync.all_true(finite):
        # Free the graph now; nothing has touched a gradient yet.
        del losses, total
        optimizers.zero_grad()
        result.skipped = True
        return result
    scaler = optimizers.scaler
    (scaler.scale(total) if scaler is not None else total).backward()
    if flow is not None and optimizers.flow is not None:
        sync.average_gradients(flow.parameters())
    if scaler is not None:
        for opt in optimizers.all():
            scaler.unscale_(opt)
        for opt in optimizers.all():
            scaler.step(opt)
        scaler.update()
    else:
        for opt in optimizers.all():
            opt.step()
    return result
