"""Per-pixel anomaly scores from segmentation logits, with temperature scaling."""

import torch

# The names and the paper's temperatures live with the numpy scores (no torch there).
from dense_ood_ros.scores_numpy import DEFAULT_TEMPERATURES, SCORES  # noqa: F401


def _check(logits, temperature):
    if logits.dim() != 4:
        raise ValueError(f'logits must be (N, C, H, W), got shape {tuple(logits.shape)}')
    if not temperature > 0:
        raise ValueError(f'temperature must be positive, got {temperature}')


def _scaled(logits, temperature):
    # fp16 logits lose the small differences temperature scaling works on: use float32 at least.
    if logits.dtype != torch.float64:
        logits = logits.float()
    return logits / temperature


def msp(logits, temperature=1.0):
    """Return 1 - max_c softmax(logits / T)_c as an (N, H, W) tensor in [0, 1 - 1/C]."""
    _check(logits, temperature)
    # max softmax = 1 / sum_c exp(l_c - l_max): one logsumexp, no full softmax tensor.
    scaled = _scaled(logits, temperature)
    log_max_prob = scaled.amax(dim=1) - torch.logsumexp(scaled, dim=1)
    return 1.0 - log_max_prob.exp()


def entropy(logits, temperature=1.0):
    """Return the Shannon entropy in nats of softmax(logits / T), shape (N, H, W)."""
    _check(logits, temperature)
    log_probs = torch.log_softmax(_scaled(logits, temperature), dim=1)
    return -(log_probs.exp() * log_probs).sum(dim=1)


def anomaly_score(logits, *, score, temperature):
    """Dispatch to the score named `score` ('msp' or 'entropy')."""
    if score == 'msp':
        return msp(logits, temperature)
    if score == 'entropy':
        return entropy(logits, temperature)
    raise ValueError(f'unknown score {score!r}; expected one of {SCORES}')
