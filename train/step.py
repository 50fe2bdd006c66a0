"""One step of Algorithm 2: paste outliers, compute Lseg and the flow's NLL, update both.

The update after the forward pass (apply_losses) also serves Algorithm 1 (train.classify_step).
"""

import contextlib
import dataclasses
import math

import numpy as np
import torch

from dense_ood_ros.labels import IGNORE_INDEX
from train.losses import flow_nll, segmentation_loss, to_label_resolution
from train.outliers import draw_size, make_patches
from train.paste import fit_size, match_shade, paste, random_positions

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


@dataclasses.dataclass
class Amp:
    """Autocast settings for the network (either task); `dtype` None means full precision."""

    device_type: str = 'cpu'
    dtype: torch.dtype = None

    def autocast(self):
        """Return the autocast context of the network's forward pass."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


@dataclasses.dataclass
class FlowLink:
    """How Lseg reaches the flow in the dense task: through a leaf standing in for its samples.

    The segmenter sees `leaf`, a detached copy of the flow's `samples` that requires grad;
    the gradient that arrives at `leaf` is then pushed into the flow by hand. Cutting the
    graph there is what lets a step choose which terms of Eq. 4 the flow hears (`signal`),
    and at what scale, without changing what the segmenter learns. What reaches the flow is
    Eq. 4 as the paper writes it, a sum over one image's pixels (averaged over the batch),
    rather than Lseg's per-pixel mean: see DESIGN.md section 4 for the measured reason.
    """

    samples: torch.Tensor  # (N, 3, s, s) flow samples with their graph
    leaf: torch.Tensor     # the same values, detached, requires_grad
    signal: str            # 'pasted' (lambda * KL on pasted pixels) or 'full' (all of Eq. 4)
    lam: float
    batch_size: int

    def flow_objective_parts(self, seg):
        """Return {name: term} of Eq. 4 as the flow hears them (sums per image)."""
        return {'ce': seg.ce_sum / self.batch_size,
                'kl': self.lam * seg.kl_sum / self.batch_size}


@dataclasses.dataclass
class Losses:
    """The differentiable losses of one step and what was pasted."""

    seg: object           # train.losses.SegmentationLoss
    nll: torch.Tensor     # LRNVP in bits/dim, None unless mode == 'rnvp'
    size: int             # pasted side length, 0 when nothing was pasted
    link: FlowLink = None  # dense task with RealNVP outliers; None for one plain backward

    @property
    def total(self):
        """Return Lseg + LRNVP: one backward gives each model exactly its gradients.

        Used when `link` is None: the segmenter only appears in Lseg (x' is detached), so it
        receives grad(Lseg); the flow receives grad(LRNVP) + grad(Lseg) through whatever
        samples it made.
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
    size, replaced, link = 0, None, None
    if outliers.pastes:
        divisor = flow.size_divisor if outliers.mode == 'rnvp' else 1
        size = fit_size(draw_size(outliers.sizes, generator=randomness.size), height, width,
                        divisor=divisor)
        positions = random_positions(batch, size, height, width,
                                     generator=randomness.position)
        patches = make_patches(outliers, flow=flow, batch_size=batch, size=size,
                               generator=randomness.tensor, device=images.device)
        patches = match_shade(patches, images, positions, probability=outliers.shade_match,
                              max_offset=outliers.shade_offset, generator=randomness.position)
        if outliers.mode == 'rnvp':
            link = FlowLink(samples=patches, leaf=patches.detach().requires_grad_(),
                            signal=outliers.flow_signal, lam=outliers.lam, batch_size=batch)
            patches = link.leaf
        pasted = paste(images, patches, positions)
        images, mask, replaced = pasted.images, pasted.mask, pasted.replaced
    with amp.autocast():
        logits = segmenter(normalize(images))
    logits, mask = to_label_resolution(logits, mask, labels.shape[-2:])
    seg = segmentation_loss(logits, labels, mask, lam=outliers.lam, ignore_index=ignore_index)
    nll = None
    if outliers.mode == 'rnvp':
        nll = flow_nll(flow, replaced, generator=randomness.tensor)
    return Losses(seg=seg, nll=nll, size=size, link=link)


@dataclasses.dataclass
class Optimizers:
    """The network's and the flow's optimizers and the (possibly disabled) AMP scaler.

    `network` optimizes the discriminative model of either task (LDN-121 or VGG-13).
    """

    network: torch.optim.Optimizer
    flow: torch.optim.Optimizer = None
    scaler: torch.amp.GradScaler = None

    def all(self):
        """Return the optimizers that exist."""
        return [opt for opt in (self.network, self.flow) if opt is not None]

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
    """Scalars of one step and whether it changed the weights.

    `skipped`: a loss was NaN or infinite, so nothing was back-propagated. `overflow`: the
    losses were finite but the AMP GradScaler found inf or NaN in either model's gradients
    after unscaling, so neither optimizer stepped and the scale was lowered (the usual fp16
    back-off, frequent in the first steps while the scale settles). Either way neither
    model's weights changed.
    """

    skipped: bool
    loss: float
    ce: float
    kl: float
    nll: float
    size: int
    entropy: float = math.nan  # mean softmax entropy on pasted pixels (nats)
    probes: dict = None        # flow gradient probes, on the steps that take them
    overflow: bool = False     # GradScaler found inf/NaN gradients: neither model stepped

    @property
    def updated(self):
        """Return whether both optimizers stepped."""
        return not (self.skipped or self.overflow)


def train_step(segmenter, flow, images, labels, *, outliers, randomness, optimizers,
               normalize, amp=None, sync=None, ignore_index=IGNORE_INDEX):
    """Run one joint update; return a StepResult.

    Order: drop old gradients, forward, agree across processes that every loss is finite
    (otherwise return skipped, gradients cleared, no optimizer step), one backward of
    Lseg + LRNVP, average the flow's gradients across processes (DDP does the segmenter's),
    unscale both optimizers so no AMP loss scale survives on either model's gradients,
    then step both, or neither if either model's gradients overflowed (StepResult.overflow),
    and update the scaler once.
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
        size=losses.size,
        entropy=(float(losses.seg.entropy) if losses.size and losses.seg.entropy is not None
                 else math.nan))
    if not sync.all_true(finite):
        # Free the graph now; nothing has touched a gradient yet.
        del losses, total
        optimizers.zero_grad()
        result.skipped = True
        return result
    scaler = optimizers.scaler
    if losses.link is None:
        (scaler.scale(total) if scaler is not None else total).backward()
    else:
        _backward_linked(losses, scaler)
    if flow is not None and optimizers.flow is not None:
        sync.average_gradients(flow.parameters())
    if scaler is not None:
        result.overflow = not _scaled_step(optimizers)
    else:
        for opt in optimizers.all():
            opt.step()
    return result


def _scaled_step(optimizers):
    """Unscale both optimizers' gradients, step both or neither, update the scale once.

    GradScaler.step checks each optimizer's gradients on its own, so an overflow in the
    segmenter's alone would still let the flow step: the two models would then have taken
    different numbers of steps, and the flow's update would follow a segmenter that did not
    move. Here any inf or NaN skips both. Under DDP both models' gradients are all-reduced
    before this point, so an overflow on one rank is an overflow on all (inf and NaN survive
    the sum) and every rank decides alike. Return whether the optimizers stepped.
    """
    scaler = optimizers.scaler
    for opt in optimizers.all():
        scaler.unscale_(opt)
    # unscale_ already recorded each optimizer's inf/NaN flag; reading it costs no extra
    # pass over the gradients. The accessor is private: the CPU overflow tests in
    # test/test_train_step.py fail if a torch release changes it.
    overflow = any(float(found) > 0 for opt in optimizers.all()
                   for found in scaler._found_inf_per_device(opt).values())
    if not overflow:
        for opt in optimizers.all():
            scaler.step(opt)
    # update() lowers the scale when any recorded flag is set, whether or not step ran.
    scaler.update()
    if overflow:
        # Like a skipped loss: leave no (non-finite) gradient behind.
        optimizers.zero_grad()
    return not overflow


def _backward_linked(losses, scaler):
    """Back-propagate a dense RealNVP step whose samples reach the segmenter through a leaf.

    The segmenter gets grad(Lseg) from one backward pass, as without the link. The flow gets
    grad(LRNVP) plus the gradient of its chosen part of Eq. 4 (FlowLink) pushed through its
    samples. 'full' reuses the gradient Lseg leaves on the leaf (Lseg's per-pixel mean times
    count / batch size is the per-image sum); 'pasted' needs a second backward pass through
    the segmenter for the KL term alone. Every term carries the AMP scale, so one unscale
    per optimizer removes it from both models' gradients.
    """
    link, seg = losses.link, losses.seg

    def scaled(value):
        return scaler.scale(value) if scaler is not None else value

    if link.signal == 'pasted':
        (to_flow,) = torch.autograd.grad(
            scaled(link.flow_objective_parts(seg)['kl']), link.leaf, retain_graph=True)
        scaled(seg.loss).backward()
    else:
        scaled(seg.loss).backward()
        count = max(seg.num_inliers + seg.num_outliers, 1)
        to_flow = link.leaf.grad * (count / link.batch_size)
    flow_objective = (link.samples * to_flow.to(link.samples.dtype)).sum()
    if losses.nll is not None:
        flow_objective = flow_objective + scaled(losses.nll)
    flow_objective.backward()


def flow_gradient_norms(losses, flow):
    """Return the norms of the gradient reaching the flow's parameters from each source.

    {'ce': inlier cross-entropy, 'kl': lambda * KL on pasted pixels, 'nll': LRNVP}, each as
    the flow would hear it (FlowLink's per-image sums), whichever flow_signal trains. Uses
    torch.autograd.grad with the graph retained, so no .grad is touched and the step that
    follows is exactly the step that would have run without the probe. Empty for steps
    without a FlowLink.
    """
    link = losses.link
    if link is None:
        return {}
    params = [p for p in flow.parameters() if p.requires_grad]
    norms = {}
    for name, term in link.flow_objective_parts(losses.seg).items():
        (at_leaf,) = torch.autograd.grad(term, link.leaf, retain_graph=True)
        grads = torch.autograd.grad(link.samples, params, grad_outputs=at_leaf,
                                    retain_graph=True, allow_unused=True)
        norms[name] = _norm(grads)
    if losses.nll is not None:
        norms['nll'] = _norm(torch.autograd.grad(losses.nll, params, retain_graph=True,
                                                 allow_unused=True))
    return norms


def _norm(grads):
    return float(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.float()) for g in grads if g is not None])))


@torch.no_grad()
def sample_nll(losses, flow):
    """Return the flow's NLL (bits/dim) of its own samples in this step, or NaN.

    Next to LRNVP (the NLL of the real patches they replaced) it says whether the samples
    sit inside the flow's model of the data or at its border.
    """
    if losses.link is None:
        return math.nan
    return float(flow.nll_bits_per_dim(losses.link.samples.detach(), dequantize=False))
