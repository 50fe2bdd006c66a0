"""Anomaly scores: hand-computed values and the temperature claim of section 3.3."""

import math

import numpy as np
import pytest
import torch

from dense_ood_ros.scores import anomaly_score, entropy, msp


def _pixel(values):
    return torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1)


def test_msp_matches_hand_computation():
    logits = _pixel([2.0, 1.0, 0.0])
    expected = 1.0 - math.exp(2) / (math.exp(2) + math.exp(1) + 1.0)
    assert msp(logits, 1.0).item() == pytest.approx(expected, abs=1e-6)
    # T = 2 halves the logits.
    expected_t2 = 1.0 - math.exp(1) / (math.exp(1) + math.exp(0.5) + 1.0)
    assert msp(logits, 2.0).item() == pytest.approx(expected_t2, abs=1e-6)


def test_entropy_matches_hand_computation():
    uniform = _pixel([3.0, 3.0, 3.0, 3.0])
    assert entropy(uniform, 1.0).item() == pytest.approx(math.log(4), abs=1e-6)
    probs = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    expected = -(probs * probs.log()).sum().item()
    assert entropy(_pixel([1.0, 0.0]), 1.0).item() == pytest.approx(expected, abs=1e-6)


def test_scores_keep_the_spatial_layout():
    logits = torch.randn(2, 5, 7, 9)
    for fn in (msp, entropy):
        out = fn(logits, 1.5)
        assert out.shape == (2, 7, 9)
        assert torch.all(out >= 0)
    assert torch.all(msp(logits, 1.0) <= 1 - 1 / 5 + 1e-6)
    assert torch.all(entropy(logits, 1.0) <= math.log(5) + 1e-5)


def test_temperature_separates_outliers_from_borders():
    # Section 3.3: a border pixel has two dominant logits, an outlier-like pixel one weak
    # maximum over homogeneous others. Tune the outlier so both have the same MSP at T = 1.
    classes = 19
    border = [4.0, 4.0] + [0.0] * (classes - 2)
    p_max = math.exp(4) / (2 * math.exp(4) + classes - 2)
    top = math.log((classes - 1) * p_max / (1 - p_max))
    outlier = [top] + [0.0] * (classes - 1)
    at_t1 = msp(_pixel(border), 1.0).item(), msp(_pixel(outlier), 1.0).item()
    assert at_t1[0] == pytest.approx(at_t1[1], abs=1e-9)
    border_t10, outlier_t10 = msp(_pixel(border), 10.0).item(), msp(_pixel(outlier), 10.0).item()
    assert outlier_t10 > border_t10 + 1e-3


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='temperature'):
        msp(torch.zeros(1, 2, 1, 1), 0.0)
    with pytest.raises(ValueError, match='shape'):
        entropy(torch.zeros(2, 3), 1.0)
    with pytest.raises(ValueError, match='unknown score'):
        anomaly_score(torch.zeros(1, 2, 1, 1), score='energy', temperature=1.0)


@pytest.mark.parametrize('name', ['msp', 'entropy'])
def test_numpy_scores_and_labels_equal_the_torch_ones(name):
    # The ONNX backend computes scores and labels plane by plane in numpy.
    from dense_ood_ros import scores_numpy

    logits = torch.randn(2, 19, 9, 11, generator=torch.Generator().manual_seed(0)) * 6
    logits[0, 3, 0, 0] = logits[0, 5, 0, 0] = 50.0  # a tie: argmax takes the first
    ours = scores_numpy.anomaly_score(logits.numpy(), score=name, temperature=2.0)
    reference = anomaly_score(logits, score=name, temperature=2.0).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    np.testing.assert_array_equal(scores_numpy.argmax_labels(logits.numpy()),
                                  logits.argmax(dim=1).numpy())
