"""Tests for the multi-scale RealNVP flow used to generate synthetic outlier patches."""

import math

import pytest
import torch
import torch.utils.checkpoint

from dense_ood_ros.models import realnvp
from dense_ood_ros.models.realnvp import RealNVP, squeeze, unsqueeze

torch.set_num_threads(1)


def _randomised_flow(*, in_channels=3, num_scales=2, seed=0, noise=0.1):
    """Return a float64 flow whose parameters are perturbed far from the identity init."""
    torch.manual_seed(seed)
    flow = RealNVP(in_channels=in_channels, num_scales=num_scales, mid_channels=8,
                   num_blocks=1).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in flow.parameters():
            noise_t = torch.randn(param.shape, generator=gen, dtype=param.dtype)
            param.add_(noise * noise_t)
    return flow


def _images(shape, *, seed=0, dtype=torch.float64):
    """Return images strictly inside (0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    return 0.02 + 0.96 * torch.rand(shape, generator=gen, dtype=dtype)


def _identity_flow(flow):
    """Zero every s/t output conv so all couplings become the identity."""
    with torch.no_grad():
        for layer in flow.couplings():
            layer.st_net.out_conv.weight.zero_()
            layer.st_net.out_conv.bias.zero_()
    return flow


def test_squeeze_layout_is_hand_checked():
    """Check squeeze on a 1x2x4x4 arange against hand-written values."""
    x = torch.arange(32).reshape(1, 2, 4, 4)
    # out[(2 * i + j) * C + c, a, b] = x[c, 2a + i, 2b + j]
    expected = torch.tensor([
        [[0, 2], [8, 10]],     # i=0 j=0 c=0
        [[16, 18], [24, 26]],  # i=0 j=0 c=1
        [[1, 3], [9, 11]],     # i=0 j=1 c=0
        [[17, 19], [25, 27]],  # i=0 j=1 c=1
        [[4, 6], [12, 14]],    # i=1 j=0 c=0
        [[20, 22], [28, 30]],  # i=1 j=0 c=1
        [[5, 7], [13, 15]],    # i=1 j=1 c=0
        [[21, 23], [29, 31]],  # i=1 j=1 c=1
    ]).unsqueeze(0)
    assert torch.equal(squeeze(x), expected)


def test_squeeze_is_an_exact_permutation():
    """Check that unsqueeze undoes squeeze bit-exactly in both orders."""
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    assert torch.equal(unsqueeze(squeeze(x)), x)
    y = torch.randn(2, 12, 4, 6)
    assert torch.equal(squeeze(unsqueeze(y)), y)
    values = torch.arange(2 * 3 * 8 * 12)
    assert torch.equal(squeeze(values.reshape(2, 3, 8, 12)).flatten().sort().values, values)


def test_squeeze_rejects_odd_size():
    """Check squeeze refuses inputs it could not rearrange exactly."""
    with pytest.raises(ValueError, match='3x4'):
        squeeze(torch.zeros(1, 1, 3, 4))


@pytest.mark.parametrize('num_scales', [2, 3])
def test_inverse_of_forward_is_identity_with_opposite_logdet(num_scales):
    """Check inverse(forward(x)) == x and that the two log-determinants cancel."""
    flow = _randomised_flow(num_scales=num_scales)
    x = _images((2, 3, 16, 16))
    z, logdet_fwd = flow(x)
    assert z.shape == x.shape
    assert logdet_fwd.shape == (2,)
    # The randomised flow must be far from the identity, or the test proves little.
    assert (z - torch.logit(0.05 + 0.9 * x)).abs().max() > 0.1
    x_back, logdet_inv = flow.inverse(z)
    torch.testing.assert_close(x_back, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(logdet_fwd + logdet_inv, torch.zeros(2, dtype=torch.float64),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize('in_channels, num_scales', [(3, 2), (1, 3)])
def test_logdet_matches_autograd_jacobian(in_channels, num_scales):
    """Check the analytic logdet against slogdet of the full autograd Jacobian."""
    flow = _randomised_flow(in_channels=in_channels, num_scales=num_scales)
    x = _images((1, in_channels, 8, 8), seed=3)
    jac = torch.autograd.functional.jacobian(lambda inp: flow(inp)[0], x)
    dims = x.numel()
    sign, logabsdet = torch.linalg.slogdet(jac.reshape(dims, dims))
    assert sign != 0
    _, logdet = flow(x)
    torch.testing.assert_close(logdet[0], logabsdet, atol=1e-7, rtol=1e-9)


def test_identity_couplings_reassemble_latent_in_input_layout():
    """Check factored-out latents go back to their own pixels when couplings are identity."""
    flow = _identity_flow(_randomised_flow(num_scales=3))
    x = _images((2, 3, 16, 8), seed=4)
    z, logdet = flow(x)
    p = 0.05 + 0.9 * x
    torch.testing.assert_close(z, torch.logit(p), atol=1e-12, rtol=0)
    expected_logdet = (math.log(0.9) - torch.log(p * (1 - p))).flatten(1).sum(dim=1)
    torch.testing.assert_close(logdet, expected_logdet, atol=1e-9, rtol=0)


def test_forward_is_independent_of_the_rest_of_the_batch():
    """Check that no batch statistics leak between samples."""
    flow = _randomised_flow()
    x = _images((3, 3, 8, 8), seed=5)
    z_all, logdet_all = flow(x)
    z_one, logdet_one = flow(x[1:2])
    torch.testing.assert_close(z_all[1:2], z_one, atol=1e-12, rtol=0)
    torch.testing.assert_close(logdet_all[1:2], logdet_one, atol=1e-9, rtol=0)


def test_log_prob_is_standard_normal_prior_plus_logdet():
    """Check log_prob against torch.distributions on the latent."""
    flow = _randomised_flow()
    x = _images((2, 3, 8, 8), seed=6)
    z, logdet = flow(x)
    prior = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), 1.0)
    expected = prior.log_prob(z).flatten(1).sum(dim=1) + logdet
    torch.testing.assert_close(flow.log_prob(x), expected)


def test_sample_gradients_reach_every_coupling():
    """Check that a loss on samples trains the first layer of every s/t network."""
    torch.manual_seed(0)
    flow = RealNVP(num_scales=2, mid_channels=8, num_blocks=1)
    flow.sample(2, 16, 16).mean().backward()
    couplings = flow.couplings()
    assert len(couplings) == 2 * 6 + 4
    for index, layer in enumerate(couplings):
        first = list(layer.st_net.in_conv.parameters())
        assert first, f'coupling {index} has no input-conv parameters'
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in first), (
            f'coupling {index} ({type(layer).__name__}) got no gradient in its first layer')


@pytest.mark.parametrize('h, w', [(64, 144), (72, 96)])
def test_sample_non_square_sizes(h, w):
    """Check sample shape and range for non-square patch sizes."""
    torch.manual_seed(0)
    flow = RealNVP(mid_channels=4, num_blocks=1)
    with torch.no_grad():
        x = flow.sample(2, h, w, temperature=0.8)
    assert x.shape == (2, 3, h, w)
    assert torch.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0


def test_sample_is_reproducible_and_scaled_by_temperature():
    """Check the generator fully determines the sample and temperature scales the latent."""
    flow = _randomised_flow(num_scales=2)
    with torch.no_grad():
        first = flow.sample(2, 8, 8, temperature=0.5, generator=torch.Generator().manual_seed(7))
        second = flow.sample(2, 8, 8, temperature=0.5, generator=torch.Generator().manual_seed(7))
        other = flow.sample(2, 8, 8, temperature=0.5, generator=torch.Generator().manual_seed(8))
        z = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(7),
                        dtype=torch.float64)
        expected = flow.inverse(0.5 * z)[0].clamp(0.0, 1.0)
    assert first.dtype == torch.float64
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    torch.testing.assert_close(first, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize('h, w', [(64, 68), (60, 64)])
def test_size_not_divisible_raises(h, w):
    """Check sizes not divisible by 2 ** num_scales are rejected with a clear message."""
    flow = RealNVP(mid_channels=4, num_blocks=1)
    with pytest.raises(ValueError, match=rf'{h}x{w}.*divisible by 8'):
        flow.sample(1, h, w)
    with pytest.raises(ValueError, match='divisible by 8'):
        flow(torch.full((1, 3, h, w), 0.5))


def _nll_grads(flow, x):
    flow.zero_grad()
    flow.nll_bits_per_dim(x, dequantize=False).backward()
    return [p.grad.clone() for p in flow.parameters()]


def test_checkpointing_gives_same_gradients(monkeypatch):
    """Check checkpointed couplings give the same gradients and are really checkpointed."""
    calls = []

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(realnvp, 'checkpoint', counting_checkpoint)
    flow = _randomised_flow().float().train()
    x = _images((2, 3, 8, 8), seed=9, dtype=torch.float32)

    reference = _nll_grads(flow, x)
    assert not calls

    flow.checkpointing = True
    checkpointed = _nll_grads(flow, x)
    assert calls == [False] * len(flow.couplings())
    for ref, got in zip(reference, checkpointed):
        torch.testing.assert_close(got, ref)

    calls.clear()
    flow.eval()
    _nll_grads(flow, x)
    assert not calls, 'checkpointing must be off in eval mode'


def test_nll_bits_per_dim_on_uniform_data():
    """Check NLL is a finite, positive, differentiable scalar in a plausible range."""
    torch.manual_seed(0)
    flow = RealNVP(num_scales=2, mid_channels=4, num_blocks=1)
    x = torch.randint(0, 256, (2, 3, 16, 16)).float() / 255.0
    bpd = flow.nll_bits_per_dim(x)
    assert bpd.dim() == 0
    assert torch.isfinite(bpd)
    assert 1.0 < bpd.item() < 20.0
    bpd.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())


def test_nll_bits_per_dim_formula_without_dequantization():
    """Check the bits/dim conversion against log_prob."""
    flow = _randomised_flow()
    x = _images((2, 3, 8, 8), seed=10)
    dims = 3 * 8 * 8
    expected = ((-flow.log_prob(x) + dims * math.log(256)) / (dims * math.log(2))).mean()
    torch.testing.assert_close(flow.nll_bits_per_dim(x, dequantize=False), expected)


@pytest.mark.parametrize('bad', [-0.1, 1.5, float('nan')])
def test_forward_rejects_values_outside_unit_interval(bad):
    """Check out-of-range input is refused with the range found."""
    flow = RealNVP(num_scales=1, mid_channels=4, num_blocks=1)
    x = torch.full((1, 3, 8, 8), 0.5)
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match='found values in'):
        flow(x)
