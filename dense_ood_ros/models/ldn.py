"""LDN-121: Ladder DenseNet-121 semantic segmenter (Krešo et al. 2020), pure torch."""

import contextlib
import errno
import functools
import os
import pickle
import re

import torch
from torch import nn
import torch.nn.functional as F
import torch.utils.checkpoint

# DenseNet-121 hyper-parameters, fixed by the ImageNet weights we want to load.
BLOCK_CONFIG = (6, 12, 24, 16)
GROWTH_RATE = 32
BN_SIZE = 4
INIT_FEATURES = 64

# Upsampling path widths from the paper: SPP output, then one blend per ladder skip.
SPP_WIDTH = 512
SPP_LEVEL_WIDTH = 128
SPP_GRIDS = (8, 4, 2, 1)
UPSAMPLE_WIDTHS = (256, 256, 128)

# torchvision's densenet .pth files predate the dotless names ('norm.1' vs 'norm1').
_OLD_DENSELAYER_KEY = re.compile(r'^(.*denselayer\d+\.(?:norm|relu|conv))\.'
                                 r'((?:[12])\.(?:weight|bias|running_mean|running_var))$')
# How many offending keys an error message lists before eliding the rest.
_KEYS_IN_ERROR = 5


def _upsample_to(x, reference):
    """Resize `x` bilinearly to the spatial size of `reference` (never assumes exact halving)."""
    return F.interpolate(x, size=reference.shape[-2:], mode='bilinear', align_corners=False)


class _RunningStatsFrozen:
    """Stop batch norms inside `module` from updating their running statistics.

    Checkpoint recomputation runs the forward pass a second time; without this every batch
    norm would fold the same batch into its running mean/var twice.  A momentum of zero
    leaves the running statistics bit-identical while the batch norm still normalises with
    batch statistics and saves the same tensors for backward (checkpointing checks that);
    the batch counter it still bumps is restored afterwards.  A class rather than a
    generator context: a step that back-propagates twice through one graph (train.step's
    'pasted' flow signal) recomputes, and so enters this context, twice.
    """

    def __init__(self, module):
        self.norms = [m for m in module.modules()
                      if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
        self.saved = []

    def __enter__(self):
        self.saved.append([(norm.momentum, norm.num_batches_tracked.clone())
                           for norm in self.norms])
        for norm in self.norms:
            norm.momentum = 0.0
        return self

    def __exit__(self, *exc_info):
        for norm, (momentum, counter) in zip(self.norms, self.saved.pop()):
            norm.momentum = momentum
            norm.num_batches_tracked.copy_(counter)
        return False


def _checkpoint_contexts(module):
    """Return the (forward, recompute) contexts for checkpointing `module`."""
    return contextlib.nullcontext(), _RunningStatsFrozen(module)


def _call(module, *inputs, checkpointing):
    """Call `module`, through non-reentrant gradient checkpointing when asked to."""
    if not checkpointing:
        return module(*inputs)
    return torch.utils.checkpoint.checkpoint(
        module, *inputs, use_reentrant=False,
        context_fn=functools.partial(_checkpoint_contexts, module))


class BNReLUConv(nn.Sequential):
    """Pre-activation unit BN-ReLU-conv, the building block of the whole upsampling path."""

    def __init__(self, in_channels, out_channels, *, kernel_size=1, bias=False):
        """Build the unit; `kernel_size` is odd and padded to keep the spatial size."""
        super().__init__()
        self.add_module('norm', nn.BatchNorm2d(in_channels))
        self.add_module('relu', nn.ReLU(inplace=True))
        self.add_module('conv', nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size,
                                          padding=kernel_size // 2, bias=bias))


class DenseLayer(nn.Module):
    """DenseNet bottleneck layer: BN-ReLU-conv1x1-BN-ReLU-conv3x3 producing `growth` maps."""

    def __init__(self, in_channels, *, growth, bn_size):
        """Build the layer with torchvision's submodule names (norm1, conv1, norm2, conv2)."""
        super().__init__()
        width = bn_size * growth
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, *features):
        """Return the new maps computed from all preceding maps of the block."""
        # Concatenating in here lets checkpointing drop the (large) concatenation too.
        x = torch.cat(features, dim=1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.Module):
    """A dense block: each layer sees the concatenation of the input and all earlier outputs."""

    def __init__(self, in_channels, *, num_layers, growth, bn_size):
        """Build `num_layers` layers named denselayer1, denselayer2, ... like torchvision."""
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_channels + i * growth, growth=growth, bn_size=bn_size)
            self.add_module(f'denselayer{i + 1}', layer)
        self.out_channels = in_channels + num_layers * growth

    def forward(self, x, *, checkpointing=False):
        """Return the concatenation of the input and every layer's output."""
        features = [x]
        for layer in self.children():
            features.append(_call(layer, *features, checkpointing=checkpointing))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """DenseNet transition: BN-ReLU-conv1x1 halving the channels, then 2x2 average pooling."""

    def __init__(self, in_channels, out_channels):
        """Build the transition with torchvision's submodule names (norm, conv, pool)."""
        super().__init__()
        self.add_module('norm', nn.BatchNorm2d(in_channels))
        self.add_module('relu', nn.ReLU(inplace=True))
        self.add_module('conv', nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
        self.add_module('pool', nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet121Features(nn.Module):
    """DenseNet-121 feature extractor returning the four dense block outputs.

    Parameter names equal torchvision's ``densenet121()`` names below ``features.``.
    """

    def __init__(self):
        """Build the stem, the four dense blocks, three transitions and norm5."""
        super().__init__()
        self.features = nn.Module()
        self.features.conv0 = nn.Conv2d(3, INIT_FEATURES, kernel_size=7, stride=2, padding=3,
                                        bias=False)
        self.features.norm0 = nn.BatchNorm2d(INIT_FEATURES)
        self.features.relu0 = nn.ReLU(inplace=True)
        self.features.pool0 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = INIT_FEATURES
        self.skip_channels = []
        for i, num_layers in enumerate(BLOCK_CONFIG, start=1):
            block = DenseBlock(channels, num_layers=num_layers, growth=GROWTH_RATE,
                               bn_size=BN_SIZE)
            self.features.add_module(f'denseblock{i}', block)
            channels = block.out_channels
            self.skip_channels.append(channels)
            if i < len(BLOCK_CONFIG):
                self.features.add_module(f'transition{i}', Transition(channels, channels // 2))
                channels //= 2
        self.features.norm5 = nn.BatchNorm2d(channels)

    def forward(self, x, *, checkpointing=False):
        """Return [block1 @ /4, block2 @ /8, block3 @ /16, norm5(block4) @ /32].

        The first three are taken before their transitions; the last is not yet ReLU'd,
        so it equals torchvision's ``densenet121().features(x)``.
        """
        f = self.features
        x = f.pool0(f.relu0(f.norm0(f.conv0(x))))
        outputs = []
        for i in range(1, len(BLOCK_CONFIG) + 1):
            x = getattr(f, f'denseblock{i}')(x, checkpointing=checkpointing)
            if i < len(BLOCK_CONFIG):
                outputs.append(x)
                x = _call(getattr(f, f'transition{i}'), x, checkpointing=checkpointing)
        outputs.append(f.norm5(x))
        return outputs


class SpatialPyramidPooling(nn.Module):
    """Aspect-ratio preserving spatial pyramid pooling over the /32 features.

    In training mode every batch norm needs more than one value per channel, so the 1x1 grid
    level requires a batch of at least two images.
    """

    def __init__(self, in_channels, *, width=SPP_WIDTH, level_width=SPP_LEVEL_WIDTH,
                 grids=SPP_GRIDS):
        """Build the input projection, one projection per pyramid level and the fusion."""
        super().__init__()
        self.grids = tuple(grids)
        self.reduce = BNReLUConv(in_channels, width)
        self.levels = nn.ModuleList(BNReLUConv(width, level_width) for _ in self.grids)
        self.fuse = BNReLUConv(width + len(self.grids) * level_width, width)

    def forward(self, x):
        """Return the fused multi-scale context, same spatial size as `x`."""
        x = self.reduce(x)
        height, width = x.shape[-2:]
        pyramid = [x]
        for grid, level in zip(self.grids, self.levels):
            # Keep the grid cells roughly square on wide road images.
            size = (grid, max(1, round(grid * width / height)))
            pyramid.append(_upsample_to(level(F.adaptive_avg_pool2d(x, size)), x))
        return self.fuse(torch.cat(pyramid, dim=1))


class LadderUpsample(nn.Module):
    """One ladder step: upsample the coarse features, add the projected skip, blend."""

    def __init__(self, skip_channels, in_channels, out_channels):
        """Build the skip projection (to `in_channels`) and the 3x3 blend (to `out_channels`)."""
        super().__init__()
        self.skip = BNReLUConv(skip_channels, in_channels)
        self.blend = BNReLUConv(in_channels, out_channels, kernel_size=3)

    def forward(self, x, skip):
        """Return the blended features at the skip's resolution."""
        return self.blend(_upsample_to(x, skip) + self.skip(skip))


class LadderDenseNet(nn.Module):
    """LDN-121: DenseNet-121 backbone, SPP at /32 and a ladder-style upsampling path to /4.

    `forward` maps normalised images (N, 3, H, W) to logits (N, num_classes, H, W).  When
    `checkpointing` is set, training-mode forward passes recompute dense layers, transitions
    and ladder steps during backward instead of storing their activations.
    """

    def __init__(self, num_classes, *, checkpointing=False):
        """Build a randomly initialised network with `num_classes` outputs."""
        super().__init__()
        self.num_classes = num_classes
        self.checkpointing = checkpointing
        self.backbone = DenseNet121Features()
        skip4, skip8, skip16, out32 = self.backbone.skip_channels
        self.spp = SpatialPyramidPooling(out32)
        width = self.spp.fuse.conv.out_channels
        upsample = []
        for skip, out_width in zip((skip16, skip8, skip4), UPSAMPLE_WIDTHS):
            upsample.append(LadderUpsample(skip, width, out_width))
            width = out_width
        self.upsample = nn.ModuleList(upsample)
        self.logits = BNReLUConv(width, num_classes, bias=True)
        self._init_weights()

    def _init_weights(self):
        """Initialise like torchvision's DenseNet: He-normal convs, unit BN, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _checkpointing_active(self):
        """Return whether this forward pass should checkpoint (flag set and training)."""
        return self.checkpointing and self.training

    def backbone_features(self, x):
        """Return the ladder inputs: 256 ch @ /4, 512 @ /8, 1024 @ /16, ReLU'd 1024 @ /32."""
        features = self.backbone(x, checkpointing=self._checkpointing_active())
        features[-1] = F.relu(features[-1])
        return features

    def forward(self, x):
        """Return per-pixel logits (N, num_classes, H, W) for normalised images `x`."""
        checkpointing = self._checkpointing_active()
        *skips, top = self.backbone_features(x)
        features = self.spp(top)
        for step, skip in zip(self.upsample, reversed(skips)):
            features = _call(step, features, skip, checkpointing=checkpointing)
        return _upsample_to(self.logits(features), x)

    def backbone_parameters(self):
        """Return the DenseNet-121 parameters (the paper trains them at lr 1e-4)."""
        return list(self.backbone.parameters())

    def upsampling_parameters(self):
        """Return the SPP, ladder and logits parameters (the paper trains them at lr 4e-4)."""
        return [p for name, p in self.named_parameters() if not name.startswith('backbone.')]

    def load_backbone_weights(self, path):
        """Load torchvision's ImageNet ``densenet121`` state dict file into the backbone.

        Accepts both the old ('denselayer1.norm.1.weight') and the current key spelling and
        ignores ``classifier.*``.  Raises FileNotFoundError when `path` does not exist and
        ValueError, naming the file, unless every backbone tensor is matched with its shape.
        """
        state_dict = _read_densenet_state_dict(path)
        expected = self.backbone.state_dict()
        # Files saved before PyTorch 0.4.1 (the torchvision ones) lack the BN batch counters;
        # load_state_dict fills those in, so they may be absent but not unexpected.
        optional = {k for k in expected if k.endswith('.num_batches_tracked')}
        missing = sorted(k for k in expected if k not in state_dict and k not in optional)
        unexpected = sorted(k for k in state_dict if k not in expected)
        mismatched = sorted(k for k in state_dict if k in expected
                            and state_dict[k].shape != expected[k].shape)
        problems = []
        for what, keys in (('missing', missing), ('unexpected', unexpected),
                           ('shape-mismatched', mismatched)):
            if keys:
                shown = ', '.join(keys[:_KEYS_IN_ERROR])
                hidden = len(keys) - _KEYS_IN_ERROR
                more = f' (+{hidden} more)' if hidden > 0 else ''
                problems.append(f'{len(keys)} {what} keys: {shown}{more}')
        if problems:
            raise ValueError(f'backbone weights {os.fspath(path)}: not a densenet121 state dict; '
                             + '; '.join(problems))
        self.backbone.load_state_dict(state_dict, strict=True)


def _read_densenet_state_dict(path):
    """Read a torchvision densenet state dict as ``backbone`` keys: renamed, classifier dropped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, 'backbone weights not found', os.fspath(path))
    try:
        loaded = torch.load(path, map_location='cpu', weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f'backbone weights {os.fspath(path)}: cannot read: {error}') from error
    if not isinstance(loaded, dict):
        raise ValueError(f'backbone weights {os.fspath(path)}: expected a state dict, '
                         f'got {type(loaded).__name__}')
    state_dict = {}
    for key, value in loaded.items():
        if key.startswith('classifier.'):
            continue
        key = _OLD_DENSELAYER_KEY.sub(r'\1\2', key)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'backbone weights {os.fspath(path)}: {key} is not a tensor')
        state_dict[key] = value
    return state_dict


def ldn121(num_classes, *, backbone_weights=None, checkpointing=False):
    """Build LDN-121 with `num_classes` outputs.

    `backbone_weights` is an optional path to torchvision's ``densenet121`` state dict
    (ImageNet weights); nothing is ever downloaded.  `checkpointing` enables gradient
    checkpointing in training mode and stays toggleable as ``model.checkpointing``.
    """
    model = LadderDenseNet(num_classes, checkpointing=checkpointing)
    if backbone_weights is not None:
        model.load_backbone_weights(backbone_weights)
    return model
