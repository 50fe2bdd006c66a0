"""Per-pixel anomaly scores in numpy, for backends without torch (ONNX Runtime).

The same definitions as dense_ood_ros.scores (which computes them in torch), on (N, C, H, W)
float arrays: 1 - max softmax and the softmax entropy in nats, at temperature T.
"""

import numpy as np

SCORES = ('msp', 'entropy')

# Section 3.3 of the paper: T=10 suits max-softmax, T=2 suits entropy.
DEFAULT_TEMPERATURES = {'msp': 10.0, 'entropy': 2.0}


def _scaled(logits, temperature):
    logits = np.asarray(logits)
    if logits.ndim != 4:
        raise ValueError(f'logits must be (N, C, H, W), got shape {logits.shape}')
    if not temperature > 0:
        raise ValueError(f'temperature must be positive, got {temperature}')
    return logits.astype(np.float32, copy=False) / np.float32(temperature)


def _log_softmax_parts(scaled):
    """Return (max over classes, log of sum exp(l - max)) for a stable log-softmax."""
    top = scaled.max(axis=1, keepdims=True)
    return top, np.log(np.exp(scaled - top).sum(axis=1, keepdims=True))


def msp(logits, temperature=1.0):
    """Return 1 - max_c softmax(logits / T)_c as an (N, H, W) float32 array."""
    _, log_sum = _log_softmax_parts(_scaled(logits, temperature))
    # log max prob = max - logsumexp = -log_sum.
    return (1.0 - np.exp(-log_sum[:, 0])).astype(np.float32)


def entropy(logits, temperature=1.0):
    """Return the Shannon entropy in nats of softmax(logits / T), shape (N, H, W)."""
    scaled = _scaled(logits, temperature)
    top, log_sum = _log_softmax_parts(scaled)
    log_probs = scaled - top - log_sum
    return (-(np.exp(log_probs) * log_probs).sum(axis=1)).astype(np.float32)


def anomaly_score(logits, *, score, temperature):
    """Dispatch to the score named `score` ('msp' or 'entropy')."""
    if score == 'msp':
        return msp(logits, temperature)
    if score == 'entropy':
        return entropy(logits, temperature)
    raise ValueError(f'unknown score {score!r}; expected one of {SCORES}')
