"""Multi-scale RealNVP normalizing flow (Dinh et al. 2017) for synthetic outlier patches."""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm
from torch.utils.checkpoint import checkpoint

#: Logit preprocessing keeps the flow away from the infinite tails of logit(0) and logit(1).
ALPHA = 0.05

#: Couplings per level, as in the paper.
CHECKERBOARD_PER_SCALE = 3
CHANNELWISE_PER_SCALE = 3
FINAL_CHECKERBOARD = 4

# Std of the output convolution at init: small so the flow starts close to the identity,
# but not zero so that gradients still reach the earlier layers of every s/t network.
_OUT_INIT_STD = 1e-3


def squeeze(x):
    """Rearrange each 2x2 spatial block into channels (space-to-depth).

    (N, C, H, W) -> (N, 4C, H/2, W/2), with
    ``out[n, (2 * i + j) * C + c, a, b] == x[n, c, 2 * a + i, 2 * b + j]``.
    Grouping by sub-pixel position first means each channel half (top row of the block
    vs. bottom row) holds all colour channels.
    """
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f'squeeze needs even height and width, got {h}x{w}')
    x = x.reshape(n, c, h // 2, 2, w // 2, 2)
    x = x.permute(0, 3, 5, 1, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x):
    """Invert :func:`squeeze` exactly (depth-to-space)."""
    n, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f'unsqueeze needs a channel count divisible by 4, got {c4}')
    c = c4 // 4
    x = x.reshape(n, 2, 2, c, h, w)
    x = x.permute(0, 3, 4, 1, 5, 2)
    return x.reshape(n, c, 2 * h, 2 * w)


def checkerboard_mask(height, width, *, parity, device=None, dtype=None):
    """Return a (1, 1, H, W) mask that is 1 where (row + col) % 2 == parity."""
    rows = torch.arange(height, device=device).unsqueeze(1)
    cols = torch.arange(width, device=device).unsqueeze(0)
    mask = ((rows + cols) % 2 == parity).to(dtype or torch.get_default_dtype())
    return mask.reshape(1, 1, height, width)


def _conv3x3(in_channels, out_channels):
    return weight_norm(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))


class _ResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 plus identity skip, then ReLU."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class _STNet(nn.Module):
    """Small ResNet producing the bounded log-scale s and the shift t of a coupling."""

    def __init__(self, in_channels, out_channels, *, mid_channels, num_blocks):
        super().__init__()
        self.in_conv = _conv3x3(in_channels, mid_channels)
        self.blocks = nn.Sequential(*[_ResidualBlock(mid_channels) for _ in range(num_blocks)])
        self.out_conv = nn.Conv2d(mid_channels, 2 * out_channels, kernel_size=3, padding=1)
        nn.init.normal_(self.out_conv.weight, std=_OUT_INIT_STD)
        nn.init.zeros_(self.out_conv.bias)
        # tanh bounds the log-scale; the learned per-channel factor sets how far it may go.
        self.rescale = nn.Parameter(torch.ones(out_channels, 1, 1))

    def forward(self, x):
        h = self.blocks(F.relu(self.in_conv(x)))
        s_raw, t = self.out_conv(h).chunk(2, dim=1)
        return self.rescale * torch.tanh(s_raw), t


class CheckerboardCoupling(nn.Module):
    """Affine coupling that transforms one colour of a spatial checkerboard given the other."""

    def __init__(self, channels, *, parity, mid_channels, num_blocks):
        super().__init__()
        self.parity = parity
        # +1 input channel: the mask itself, so the net knows which pixels are conditioning.
        self.st_net = _STNet(channels + 1, channels, mid_channels=mid_channels,
                             num_blocks=num_blocks)

    def forward(self, x, reverse=False):
        """Return (y, logdet) of the coupling, or of its inverse when ``reverse``."""
        n, _, h, w = x.shape
        mask = checkerboard_mask(h, w, parity=self.parity, device=x.device, dtype=x.dtype)
        # Conditioning pixels are unchanged by the coupling, so the same net input
        # is available in both directions.
        net_in = torch.cat([x * mask, mask.expand(n, 1, h, w)], dim=1)
        s, t = self.st_net(net_in)
        s = s * (1 - mask)
        t = t * (1 - mask)
        logdet = s.sum(dim=(1, 2, 3))
        if reverse:
            return (x - t) * torch.exp(-s), -logdet
        return x * torch.exp(s) + t, logdet


class ChannelCoupling(nn.Module):
    """Affine coupling that transforms one channel half given the other."""

    def __init__(self, channels, *, flip, mid_channels, num_blocks):
        super().__init__()
        if channels % 2:
            raise ValueError(f'channel coupling needs an even channel count, got {channels}')
        self.flip = flip
        half = channels // 2
        self.st_net = _STNet(half, half, mid_channels=mid_channels, num_blocks=num_blocks)

    def forward(self, x, reverse=False):
        """Return (y, logdet) of the coupling, or of its inverse when ``reverse``."""
        cond, active = x.chunk(2, dim=1)
        if self.flip:
            cond, active = active, cond
        s, t = self.st_net(cond)
        if reverse:
            active = (active - t) * torch.exp(-s)
        else:
            active = active * torch.exp(s) + t
        logdet = s.sum(dim=(1, 2, 3))
        parts = [active, cond] if self.flip else [cond, active]
        return torch.cat(parts, dim=1), (-logdet if reverse else logdet)


class _Scale(nn.Module):
    """Couplings of one scale: checkerboard ones, then (after a squeeze) channel-wise ones."""

    def __init__(self, channels, *, mid_channels, num_blocks):
        super().__init__()
        self.checkerboard = nn.ModuleList([
            CheckerboardCoupling(channels, parity=i % 2, mid_channels=mid_channels,
                                 num_blocks=num_blocks)
            for i in range(CHECKERBOARD_PER_SCALE)])
        self.channelwise = nn.ModuleList([
            ChannelCoupling(4 * channels, flip=bool(i % 2), mid_channels=mid_channels,
                            num_blocks=num_blocks)
            for i in range(CHANNELWISE_PER_SCALE)])


class RealNVP(nn.Module):
    """Multi-scale RealNVP on images in [0, 1] with a standard normal prior.

    Pipeline of ``forward``: ``y = logit(ALPHA + (1 - 2 * ALPHA) * x)``, then for each
    scale 3 checkerboard couplings, :func:`squeeze`, 3 channel-wise couplings and a factor-out
    of the first channel half; finally 4 checkerboard couplings on what remains.

    Latent layout: ``z`` has the shape of ``x``. With ``z_k`` the half factored out at scale
    ``k`` (shape (N, 2 * C_k, H_k, W_k) after the squeeze) and ``r_S`` the output of the final
    couplings, ``r_k = unsqueeze(cat([z_k, r_{k+1}], dim=1))`` and ``z = r_0``. Because
    :func:`squeeze` puts the top row of each 2x2 block first, the scale-0 latents sit on the
    even rows, ``z[:, c, 2 * a, 2 * b + j] == z_0[:, j * C + c, a, b]``, and the odd rows hold
    the deeper scales, recursively.

    Setting ``checkpointing`` (constructor keyword or attribute) recomputes each coupling in the
    backward pass to save memory; it only takes effect in training mode.
    """

    def __init__(self, in_channels=3, num_scales=3, mid_channels=32, num_blocks=3, *,
                 checkpointing=False):
        super().__init__()
        if num_scales < 1:
            raise ValueError(f'num_scales must be at least 1, got {num_scales}')
        self.in_channels = in_channels
        self.num_scales = num_scales
        self.checkpointing = checkpointing
        self.scales = nn.ModuleList()
        channels = in_channels
        for _ in range(num_scales):
            self.scales.append(_Scale(channels, mid_channels=mid_channels,
                                      num_blocks=num_blocks))
            channels *= 2  # squeeze gives 4C, half of it is factored out
        self.final = nn.ModuleList([
            CheckerboardCoupling(channels, parity=i % 2, mid_channels=mid_channels,
                                 num_blocks=num_blocks)
            for i in range(FINAL_CHECKERBOARD)])

    @property
    def size_divisor(self):
        """Return the factor that input height and width must be divisible by."""
        return 2 ** self.num_scales

    def couplings(self):
        """Return every coupling layer, in forward order."""
        layers = []
        for scale in self.scales:
            layers.extend(scale.checkerboard)
            layers.extend(scale.channelwise)
        layers.extend(self.final)
        return layers

    def forward(self, x):
        """Map images x in [0, 1] of shape (N, C, H, W) to (z, logdet), logdet of shape (N,).

        ``logdet`` is log|det dz/dx| per sample, including the logit preprocessing.
        """
        self._check_input(x, name='x')
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if not (lo >= 0.0 and hi <= 1.0):  # written this way so NaN is rejected too
            raise ValueError(f'x must lie in [0, 1], found values in [{lo}, {hi}]')
        y, logdet = _logit_preprocess(x)
        z, flow_logdet = self._flow_forward(y)
        return z, logdet + flow_logdet

    def inverse(self, z):
        """Map latents z of shape (N, C, H, W) to (x, logdet) with logdet = log|det dx/dz|.

        ``x`` is the exact inverse of :meth:`forward`; it lies in [0, 1] whenever ``z`` is in
        the image of [0, 1] under the flow, and may stray slightly outside otherwise (the
        affine after the sigmoid maps (0, 1) onto about (-0.056, 1.056)).
        """
        self._check_input(z, name='z')
        y, flow_logdet = self._flow_inverse(z)
        x, logdet = _sigmoid_postprocess(y)
        return x, logdet + flow_logdet

    def log_prob(self, x):
        """Return log p(x) per sample (shape (N,)) under the standard normal prior on z."""
        z, logdet = self(x)
        log_pz = -0.5 * (z ** 2 + math.log(2 * math.pi))
        return log_pz.flatten(1).sum(dim=1) + logdet

    def nll_bits_per_dim(self, x, dequantize=True):
        """Return the batch-mean negative log-likelihood of 8-bit images in bits per dim.

        ``x`` in [0, 1] holds 8-bit values v / 255. With ``dequantize`` (for training) the
        continuous point is ``(255 * x + u) / 256`` with ``u ~ U[0, 1)``, otherwise x itself.
        Each of the 256 bins has width 1/256, so the discrete NLL is bounded by
        ``-log p(x_cont) + D * log(256)`` nats, which is divided by ``D * log(2)`` for bits per
        dimension, D = C * H * W. Returns a scalar tensor.
        """
        if dequantize:
            x = (255.0 * x + torch.rand_like(x)) / 256.0
        num_dims = x[0].numel()
        nll_nats = -self.log_prob(x) + num_dims * math.log(256.0)
        return (nll_nats / (num_dims * math.log(2.0))).mean()

    def sample(self, n, h, w, *, temperature=1.0, generator=None):
        """Draw n images of shape (C, h, w) with values in [0, 1], differentiably.

        The latent is ``temperature * N(0, I)``. The result is clamped to [0, 1] because a
        latent outside the flow's image of [0, 1] inverts to slightly out-of-range values;
        the clamp keeps gradients for all in-range pixels.
        """
        self._check_size(h, w)
        param = next(self.parameters())
        z = torch.randn((n, self.in_channels, h, w), generator=generator,
                        device=param.device, dtype=param.dtype)
        x, _ = self.inverse(z * temperature)
        return x.clamp(0.0, 1.0)

    def _check_size(self, h, w):
        div = self.size_divisor
        if h % div or w % div:
            raise ValueError(f'image size {h}x{w} is not divisible by {div} '
                             f'(2 ** num_scales with num_scales={self.num_scales})')

    def _check_input(self, x, *, name):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'{name} must have shape (N, {self.in_channels}, H, W), '
                             f'got {tuple(x.shape)}')
        self._check_size(x.shape[2], x.shape[3])

    def _couple(self, layer, x, *, reverse):
        if self.checkpointing and self.training:
            return checkpoint(layer, x, reverse=reverse, use_reentrant=False)
        return layer(x, reverse=reverse)

    def _run(self, layers, x, logdet, *, reverse):
        for layer in layers:
            x, layer_logdet = self._couple(layer, x, reverse=reverse)
            logdet = logdet + layer_logdet
        return x, logdet

    def _flow_forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        factored = []
        for scale in self.scales:
            x, logdet = self._run(scale.checkerboard, x, logdet, reverse=False)
            x, logdet = self._run(scale.channelwise, squeeze(x), logdet, reverse=False)
            z_k, x = x.chunk(2, dim=1)
            factored.append(z_k)
        x, logdet = self._run(self.final, x, logdet, reverse=False)
        for z_k in reversed(factored):
            x = unsqueeze(torch.cat([z_k, x], dim=1))
        return x, logdet

    def _flow_inverse(self, z):
        logdet = z.new_zeros(z.shape[0])
        factored = []
        for _ in self.scales:
            z_k, z = squeeze(z).chunk(2, dim=1)
            factored.append(z_k)
        z, logdet = self._run(self.final[::-1], z, logdet, reverse=True)
        for scale, z_k in zip(reversed(self.scales), reversed(factored)):
            z = torch.cat([z_k, z], dim=1)
            z, logdet = self._run(scale.channelwise[::-1], z, logdet, reverse=True)
            z, logdet = self._run(scale.checkerboard[::-1], unsqueeze(z), logdet, reverse=True)
        return z, logdet


def _logit_preprocess(x):
    p = ALPHA + (1.0 - 2.0 * ALPHA) * x
    log_p, log_1mp = torch.log(p), torch.log1p(-p)
    # d/dx logit(p) = (1 - 2 * ALPHA) / (p * (1 - p))
    logdet = (math.log(1.0 - 2.0 * ALPHA) - log_p - log_1mp).flatten(1).sum(dim=1)
    return log_p - log_1mp, logdet


def _sigmoid_postprocess(y):
    x = (torch.sigmoid(y) - ALPHA) / (1.0 - 2.0 * ALPHA)
    # logsigmoid keeps log(p * (1 - p)) finite for large |y|.
    log_dp = F.logsigmoid(y) + F.logsigmoid(-y) - math.log(1.0 - 2.0 * ALPHA)
    return x, log_dp.flatten(1).sum(dim=1)
