"""Where synthetic outlier patches come from: RealNVP samples, Gaussian noise, or nowhere."""

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class OutlierSettings:
    """How a training step makes and weighs outliers.

    `mode` is 'rnvp' (the paper's method), 'noise' (Gaussian noise patches clipped to
    [0, 1], the "LDN + noise" baseline) or 'none' (plain cross-entropy, the MSP baseline).
    `sizes` are the candidate patch sides, one drawn per step; `lam` weighs the KL term.
    `flow_signal` says what of Lseg reaches the flow in the dense task: 'full' (all of
    Eq. 4, through the receptive field too; the default) or 'pasted' (the KL term on pasted
    pixels). `shade_match` and `shade_offset` move a share of the dense task's patches to
    the shade of what they cover (train.paste.match_shade).
    """

    mode: str
    sizes: tuple
    lam: float
    noise_mean: float = 0.5
    noise_std: float = 0.25
    flow_signal: str = 'full'
    shade_match: float = 0.0
    shade_offset: float = 0.2

    @property
    def pastes(self):
        """Return whether this mode pastes anything."""
        return self.mode != 'none'


def draw_size(sizes, *, generator):
    """Return one side length drawn uniformly from `sizes`."""
    index = int(torch.randint(0, len(sizes), (1,), generator=generator))
    return int(sizes[index])


def make_patches(settings, *, flow, batch_size, size, generator, device):
    """Return (batch_size, 3, size, size) outlier patches in [0, 1] for a pasting mode.

    RealNVP samples keep their graph, so that Lseg's gradient reaches the flow through
    the pasted pixels; noise patches carry no gradient. `generator` lives on `device`.
    """
    if settings.mode == 'rnvp':
        return flow.sample(batch_size, size, size, generator=generator)
    if settings.mode == 'noise':
        noise = torch.randn((batch_size, 3, size, size), generator=generator, device=device)
        return (settings.noise_mean + settings.noise_std * noise).clamp(0.0, 1.0)
    raise ValueError(f'outlier mode {settings.mode!r} pastes no patches')
