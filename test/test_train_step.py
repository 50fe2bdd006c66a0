"""One step of Algorithm 2 on tiny inputs: who gets which gradient, modes, the NaN skip."""

import math

import pytest
import torch

from dense_ood_ros.labels import IMAGENET_MEAN, IMAGENET_STD
from dense_ood_ros.models import RealNVP, ldn121
from dense_ood_ros.normalization import Normalizer
from train.outliers import OutlierSettings, draw_size
from train.step import (
    Optimizers, apply_losses, compute_losses, flow_gradient_norms, sample_nll,
    step_randomness, train_step)

NUM_CLASSES = 3
SIZES = (8, 12, 16)


def _models(mode='rnvp', seed=0):
    torch.manual_seed(seed)
    segmenter = ldn121(NUM_CLASSES).train()
    flow = RealNVP(num_scales=2, mid_channels=4, num_blocks=1).train() if mode == 'rnvp' \
        else None
    return segmenter, flow


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, 64, 64), generator=gen).float() / 255
    labels = torch.randint(0, NUM_CLASSES, (2, 64, 64), generator=gen)
    labels[:, :4] = 255
    return images, labels


def _optimizers(segmenter, flow):
    return Optimizers(network=torch.optim.Adam(segmenter.parameters(), lr=1e-3),
                      flow=torch.optim.Adam(flow.parameters(), lr=1e-3) if flow else None)


def _settings(mode='rnvp', lam=1.0, signal='pasted'):
    return OutlierSettings(mode=mode, sizes=SIZES, lam=lam, flow_signal=signal)


def _normalize():
    return Normalizer(IMAGENET_MEAN, IMAGENET_STD)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    after = module.state_dict()
    return [k for k in before if not torch.equal(before[k], after[k])]


def _param_names(module):
    return {name for name, _ in module.named_parameters()}


def test_one_step_changes_both_models_weights():
    segmenter, flow = _models()
    seg_before, flow_before = _snapshot(segmenter), _snapshot(flow)
    images, labels = _batch()
    result = train_step(segmenter, flow, images, labels, outliers=_settings(),
                        randomness=step_randomness(0, 0), optimizers=_optimizers(segmenter, flow),
                        normalize=_normalize())
    assert not result.skipped
    assert result.size in SIZES
    assert math.isfinite(result.ce) and math.isfinite(result.kl) and math.isfinite(result.nll)
    seg_changed = set(_changed(seg_before, segmenter)) & _param_names(segmenter)
    flow_changed = set(_changed(flow_before, flow)) & _param_names(flow)
    # Every parameter took a step (Adam moves any parameter with a non-zero gradient).
    assert seg_changed == _param_names(segmenter)
    assert flow_changed == _param_names(flow)


def test_every_source_reaches_the_flow_and_the_probe_touches_no_gradient():
    segmenter, flow = _models()
    images, labels = _batch()
    losses = compute_losses(segmenter, flow, images, labels, outliers=_settings(),
                            randomness=step_randomness(0, 0), normalize=_normalize())
    norms = flow_gradient_norms(losses, flow)
    assert set(norms) == {'ce', 'kl', 'nll'}
    assert all(value > 0 and math.isfinite(value) for value in norms.values())
    assert all(p.grad is None for p in flow.parameters())
    assert all(p.grad is None for p in segmenter.parameters())
    # The flow's own samples have a finite NLL in bits/dim.
    assert math.isfinite(sample_nll(losses, flow))


def test_with_no_inlier_pixel_only_the_kl_term_reaches_the_flow():
    # All labels ignore: only the pasted pixels' KL enters Lseg.
    segmenter, flow = _models()
    images, labels = _batch()
    labels[:] = 255
    losses = compute_losses(segmenter, flow, images, labels, outliers=_settings(),
                            randomness=step_randomness(0, 0), normalize=_normalize())
    assert losses.seg.num_inliers == 0 and losses.seg.num_outliers == 2 * losses.size ** 2
    norms = flow_gradient_norms(losses, flow)
    assert norms['ce'] == 0 and norms['kl'] > 0


def test_the_flow_nll_never_reaches_the_segmenter():
    segmenter, flow = _models()
    images, labels = _batch()
    losses = compute_losses(segmenter, flow, images, labels, outliers=_settings(),
                            randomness=step_randomness(0, 0), normalize=_normalize())
    losses.nll.backward(retain_graph=True)
    assert all(p.grad is None for p in segmenter.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())


def _step_gradients(signal, labels, *, lam=1.0, checkpointing=False):
    """Return (segmenter grads, flow grads, reference flow grads) after apply_losses."""
    segmenter, flow = _models()
    segmenter.checkpointing = flow.checkpointing = checkpointing
    images, _ = _batch()
    losses = compute_losses(segmenter, flow, images, labels,
                            outliers=_settings(lam=lam, signal=signal),
                            randomness=step_randomness(0, 0), normalize=_normalize())
    # lr 0: the optimizers step without moving anything, and leave the gradients to read.
    optimizers = Optimizers(network=torch.optim.SGD(segmenter.parameters(), lr=0.0),
                            flow=torch.optim.SGD(flow.parameters(), lr=0.0))
    reference = _reference_flow_gradients(losses, flow, signal)
    apply_losses(losses, flow=flow, optimizers=optimizers)
    return ([p.grad.clone() for p in segmenter.parameters()],
            [p.grad.clone() for p in flow.parameters()], reference)


def _reference_flow_gradients(losses, flow, signal):
    """Return grad(LRNVP) + grad(chosen part of Eq. 4, summed per image) wrt the flow."""
    link, seg = losses.link, losses.seg
    term = link.lam * seg.kl_sum
    if signal == 'full':
        term = term + seg.ce_sum
    (at_leaf,) = torch.autograd.grad(term / link.batch_size, link.leaf, retain_graph=True)
    via_samples = torch.autograd.grad(link.samples, list(flow.parameters()),
                                      grad_outputs=at_leaf, retain_graph=True)
    via_nll = torch.autograd.grad(losses.nll, list(flow.parameters()), retain_graph=True)
    return [a + b for a, b in zip(via_samples, via_nll)]


@pytest.mark.parametrize('signal', ['pasted', 'full'])
def test_the_flow_gets_its_nll_plus_the_chosen_part_of_eq4_per_image(signal):
    _, labels = _batch()
    _, flow_grads, reference = _step_gradients(signal, labels)
    for got, want in zip(flow_grads, reference):
        # Per-image sums are large; compare at float32 precision of the tensor's own scale.
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale)


def test_pasted_signal_makes_the_flow_deaf_to_the_inlier_labels_and_full_does_not():
    _, labels = _batch()
    other = labels.clone()
    inliers = other != 255
    other[inliers] = (other[inliers] + 1) % NUM_CLASSES
    seg_a, flow_a, _ = _step_gradients('pasted', labels)
    seg_b, flow_b, _ = _step_gradients('pasted', other)
    assert all(torch.equal(a, b) for a, b in zip(flow_a, flow_b))
    # The segmenter still learns from the labels.
    assert not all(torch.equal(a, b) for a, b in zip(seg_a, seg_b))
    _, full_a, _ = _step_gradients('full', labels)
    _, full_b, _ = _step_gradients('full', other)
    assert not all(torch.equal(a, b) for a, b in zip(full_a, full_b))


def test_checkpointing_gives_the_pasted_signal_the_same_gradients():
    # 'pasted' back-propagates twice through one graph: recomputation must happen twice.
    _, labels = _batch()
    seg_plain, flow_plain, _ = _step_gradients('pasted', labels)
    seg_ckpt, flow_ckpt, _ = _step_gradients('pasted', labels, checkpointing=True)
    for a, b in zip(seg_plain + flow_plain, seg_ckpt + flow_ckpt):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(a.abs().max()))


def test_the_segmenter_gradient_does_not_depend_on_the_flow_signal():
    _, labels = _batch()
    seg_pasted, _, _ = _step_gradients('pasted', labels)
    seg_full, _, _ = _step_gradients('full', labels)
    for a, b in zip(seg_pasted, seg_full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('mode', ['rnvp', 'noise', 'none'])
def test_each_outlier_mode_runs_and_updates_the_segmenter(mode):
    segmenter, flow = _models(mode)
    before = _snapshot(segmenter)
    images, labels = _batch()
    result = train_step(segmenter, flow, images, labels, outliers=_settings(mode),
                        randomness=step_randomness(0, 0), optimizers=_optimizers(segmenter, flow),
                        normalize=_normalize())
    assert not result.skipped
    assert set(_changed(before, segmenter)) & _param_names(segmenter)
    if mode == 'none':
        assert result.size == 0 and math.isnan(result.kl) and math.isnan(result.nll)
    else:
        assert result.size in SIZES and math.isfinite(result.kl)
        assert math.isnan(result.nll) == (mode == 'noise')


def test_noise_patches_are_clipped_gaussian_noise_in_image_space():
    segmenter, _ = _models('noise')
    captured = {}

    def keep_input(module, inputs):
        captured['x'] = inputs[0].detach()

    handle = segmenter.register_forward_pre_hook(keep_input)
    images, labels = _batch()
    normalize = _normalize()
    compute_losses(segmenter, None, images, labels, outliers=_settings('noise'),
                   randomness=step_randomness(0, 0), normalize=normalize)
    handle.remove()
    pixels = captured['x'] * normalize.std + normalize.mean
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_a_non_finite_loss_skips_the_step_and_clears_gradients():
    segmenter, flow = _models()
    seg_before, flow_before = _snapshot(segmenter), _snapshot(flow)
    optimizers = _optimizers(segmenter, flow)
    handle = segmenter.logits.register_forward_hook(lambda m, i, out: out * math.nan)
    images, labels = _batch()
    result = train_step(segmenter, flow, images, labels, outliers=_settings(),
                        randomness=step_randomness(0, 0), optimizers=optimizers,
                        normalize=_normalize())
    handle.remove()
    assert result.skipped and math.isnan(result.loss)
    # Weights untouched (BN running statistics aside: the forward pass did run).
    params = _param_names(segmenter)
    assert not set(_changed(seg_before, segmenter)) & params
    assert not _changed(flow_before, flow)
    assert all(p.grad is None for p in segmenter.parameters())
    assert all(p.grad is None for p in flow.parameters())
    assert not optimizers.network.state and not optimizers.flow.state


def test_the_step_randomness_is_a_function_of_seed_iteration_and_rank():
    def draws(seed, iteration, rank):
        r = step_randomness(seed, iteration, rank=rank)
        return (draw_size(SIZES, generator=r.size), torch.rand(3, generator=r.position),
                torch.rand(3, generator=r.tensor))

    first, again = draws(0, 5, 0), draws(0, 5, 0)
    assert first[0] == again[0]
    assert torch.equal(first[1], again[1]) and torch.equal(first[2], again[2])
    other_rank = draws(0, 5, 1)
    assert other_rank[0] == first[0]  # every rank pastes the same size
    assert not torch.equal(other_rank[1], first[1])
    assert not torch.equal(draws(0, 6, 0)[2], first[2])
    assert not torch.equal(draws(1, 5, 0)[2], first[2])


def test_draw_size_covers_the_whole_set():
    sizes = {draw_size(SIZES, generator=step_randomness(0, i).size) for i in range(60)}
    assert sizes == set(SIZES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_fp16_amp_on_cuda_leaves_no_loss_scale_on_either_models_gradients():
    from train.step import Amp

    grads = {}
    for amp in (None, Amp(device_type='cuda', dtype=torch.float16)):
        segmenter, flow = _models()
        segmenter, flow = segmenter.cuda(), flow.cuda()
        optimizers = _optimizers(segmenter, flow)
        if amp is not None:
            optimizers.scaler = torch.amp.GradScaler('cuda', init_scale=1024.0)
        images, labels = (t.cuda() for t in _batch())
        result = train_step(segmenter, flow, images, labels, outliers=_settings(),
                            randomness=step_randomness(0, 0, device='cuda'),
                            optimizers=optimizers, normalize=Normalizer(
                                IMAGENET_MEAN, IMAGENET_STD, device='cuda'), amp=amp)
        assert not result.skipped
        grads[amp is None] = [torch.cat([p.grad.float().flatten() for p in m.parameters()
                                         if p.grad is not None]) for m in (segmenter, flow)]
    for fp32, fp16 in zip(grads[True], grads[False]):
        # Unscaled: the same size as float32's gradients, not 1024 times larger.
        ratio = float(fp16.norm() / fp32.norm())
        assert 0.5 < ratio < 2.0, ratio


def test_labels_at_twice_the_input_resolution_are_scored_there():
    segmenter, flow = _models()
    images, labels = _batch()
    fine = labels.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    losses = compute_losses(segmenter, flow, images, fine, outliers=_settings(),
                            randomness=step_randomness(0, 0), normalize=_normalize())
    # Pasted pixels are counted on the label grid: four label pixels per input pixel.
    assert losses.seg.num_outliers == 4 * 2 * losses.size ** 2
    assert math.isfinite(float(losses.seg.loss.detach()))
    norms = flow_gradient_norms(losses, flow)
    assert norms['kl'] > 0 and norms['ce'] > 0


def _cpu_scaler(init_scale=1024.0):
    # GradScaler runs on the CPU too: the overflow path is exercised without a GPU.
    return torch.amp.GradScaler('cpu', init_scale=init_scale, growth_interval=1000)


def _overflow_step(signal, *, scaler, poisoned=None):
    """Run one scaled step; `poisoned` ('segmenter' or 'flow') gets an inf gradient."""
    segmenter, flow = _models()
    before = {'segmenter': _snapshot(segmenter), 'flow': _snapshot(flow)}
    optimizers = _optimizers(segmenter, flow)
    optimizers.scaler = scaler
    if poisoned is not None:
        model = segmenter if poisoned == 'segmenter' else flow
        # One parameter is enough: GradScaler checks each optimizer as a whole.
        next(model.parameters()).register_hook(lambda grad: grad + math.inf)
    images, labels = _batch()
    result = train_step(segmenter, flow, images, labels, outliers=_settings(signal=signal),
                        randomness=step_randomness(0, 0), optimizers=optimizers,
                        normalize=_normalize())
    changed = {'segmenter': set(_changed(before['segmenter'], segmenter))
               & _param_names(segmenter),
               'flow': set(_changed(before['flow'], flow)) & _param_names(flow)}
    return result, changed, optimizers


@pytest.mark.parametrize('poisoned, signal', [('segmenter', 'pasted'), ('flow', 'pasted'),
                                              ('segmenter', 'full')])
def test_an_overflow_in_either_model_steps_neither_and_lowers_the_scale(poisoned, signal):
    scaler = _cpu_scaler(1024.0)
    result, changed, optimizers = _overflow_step(signal, scaler=scaler, poisoned=poisoned)
    assert result.overflow and not result.skipped and not result.updated
    # The losses were finite: they are reported as such.
    assert math.isfinite(result.loss) and math.isfinite(result.nll)
    assert changed == {'segmenter': set(), 'flow': set()}
    assert not optimizers.network.state and not optimizers.flow.state
    assert scaler.get_scale() == 512.0
    assert all(p.grad is None for opt in optimizers.all()
               for group in opt.param_groups for p in group['params'])


def test_an_enormous_loss_scale_overflows_and_is_halved():
    scaler = _cpu_scaler(2.0 ** 127)
    result, changed, _ = _overflow_step('pasted', scaler=scaler)
    assert result.overflow
    assert changed == {'segmenter': set(), 'flow': set()}
    assert scaler.get_scale() == 2.0 ** 126


def test_a_scaled_step_without_overflow_updates_both_models_and_keeps_the_scale():
    scaler = _cpu_scaler(1024.0)
    result, changed, _ = _overflow_step('pasted', scaler=scaler)
    assert result.updated and not result.overflow
    assert changed['segmenter'] and changed['flow']
    assert scaler.get_scale() == 1024.0
