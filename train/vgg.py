"""VGG-13 with batch norm for 32x32 images, the classifier of the paper's Table 1.

As in Lee et al. 2018 (whose setup the paper follows, via kuangliu/pytorch-cifar): the
VGG-13 convolution stack with BN + ReLU after every 3x3 convolution, five 2x2 max-pools
taking 32x32 to 1x1, then one linear layer on the 512 features. About 9.4M parameters.
"""

from torch import nn

ARCH = 'vgg13_bn'
# Output channels of each 3x3 convolution; 'M' is a 2x2 max-pool.
VGG13 = (64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M')
INPUT_SIDE = 32


class VGG(nn.Module):
    """A VGG convolution stack for 32x32 inputs and a linear classifier on its output."""

    def __init__(self, num_classes, *, layers=VGG13, in_channels=3):
        super().__init__()
        modules = []
        channels = in_channels
        for item in layers:
            if item == 'M':
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            modules += [nn.Conv2d(channels, item, kernel_size=3, padding=1),
                        nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
            channels = item
        self.features = nn.Sequential(*modules)
        self.pools = sum(item == 'M' for item in layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        """Return logits (N, num_classes) of images (N, 3, 32, 32), already normalised."""
        side = 2 ** self.pools
        if x.dim() != 4 or x.shape[2] != side or x.shape[3] != side:
            raise ValueError(f'VGG expects (N, C, {side}, {side}) images, got {tuple(x.shape)}')
        return self.classifier(self.features(x).flatten(1))


def vgg13_bn(num_classes):
    """Return VGG-13 with batch norm for 32x32 inputs."""
    return VGG(num_classes, layers=VGG13)
