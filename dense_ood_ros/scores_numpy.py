"""Per-pixel anomaly scores in numpy, for backends without torch (ONNX Runtime).

The same definitions as dense_ood_ros.scores (which computes them in torch), on (N, C, H, W)
float arrays: 1 - max softmax and the softmax entropy in nats, at temperature T.
"""

import numpy as np

SCORES = ('msp', 'entropy')

# Section 3.3 of the paper: T=10 suits max-softmax, T=2 suits entropy.
DEFAULT_TEMPERATURES = {'msp': 10.0, 'entropy': 2.0}


def _check(logits, temperature):
    logits = np.asarray(logits)
    if logits.ndim != 4:
        raise ValueError(f'logits must be (N, C, H, W), got shape {logits.shape}')
    if not temperature > 0:
        raise ValueError(f'temperature must be positive, got {temperature}')
    return logits


def _softmax_sums(logits, temperature, *, with_entropy):
    """Return (S, E) per pixel: S = sum_c exp(z_c), E = sum_c exp(z_c) z_c (or None).

    z_c = (l_c - max_c l_c) / T. Computed one class plane at a time: numpy reduces over a
    short middle axis slowly (1.6 s for 19 classes at 1024x2048), elementwise work on
    contiguous planes takes a tenth of that.
    """
    top = _plane_max(logits)
    inverse = np.float32(1.0 / temperature)
    total = np.zeros(top.shape, np.float32)
    weighted = np.zeros(top.shape, np.float32) if with_entropy else None
    z = np.empty(top.shape, np.float32)
    for c in range(logits.shape[1]):
        np.subtract(logits[:, c], top, out=z)
        z *= inverse
        e = np.exp(z)
        total += e
        if with_entropy:
            e *= z
            weighted += e
    return total, weighted


def _plane_max(logits):
    top = np.array(logits[:, 0], dtype=np.float32)
    for c in range(1, logits.shape[1]):
        np.maximum(top, logits[:, c], out=top)
    return top


def argmax_labels(logits):
    """Return the (N, H, W) uint8 class of the largest logit (the first of ties, as argmax)."""
    logits = np.asarray(logits)
    top = np.array(logits[:, 0], dtype=np.float32)
    labels = np.zeros(top.shape, np.uint8)
    for c in range(1, logits.shape[1]):
        better = logits[:, c] > top
        labels[better] = c
        np.maximum(top, logits[:, c], out=top)
    return labels


def msp(logits, temperature=1.0):
    """Return 1 - max_c softmax(logits / T)_c as an (N, H, W) float32 array."""
    logits = _check(logits, temperature)
    total, _ = _softmax_sums(logits, temperature, with_entropy=False)
    # max softmax = exp(0) / sum_c exp(z_c).
    return (1.0 - 1.0 / total).astype(np.float32)


def entropy(logits, temperature=1.0):
    """Return the Shannon entropy in nats of softmax(logits / T), shape (N, H, W)."""
    logits = _check(logits, temperature)
    total, weighted = _softmax_sums(logits, temperature, with_entropy=True)
    # H = -sum p_c log p_c with p_c = exp(z_c) / S: H = log S - (sum exp(z_c) z_c) / S.
    return (np.log(total) - weighted / total).astype(np.float32)


def anomaly_score(logits, *, score, temperature):
    """Dispatch to the score named `score` ('msp' or 'entropy')."""
    if score == 'msp':
        return msp(logits, temperature)
    if score == 'entropy':
        return entropy(logits, temperature)
    raise ValueError(f'unknown score {score!r}; expected one of {SCORES}')
