"""infer_image: image files in, output files out, bad input reported by name."""

import cv2
import numpy as np

from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.tools.infer_image import main


def test_writes_outputs_equal_to_the_pipeline(tiny_checkpoint_path, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    device: cpu\n    score: entropy\n'
                      f'    checkpoint: {tiny_checkpoint_path}\n')
    out = tmp_path / 'out'
    assert main(['--params-file', str(params), '--threshold', '0.7', '--out', str(out),
                 str(image)]) == 0

    expected = DenseOODPipeline.from_checkpoint(
        tiny_checkpoint_path, device='cpu', score='entropy', threshold=0.7).infer(rgb)
    np.testing.assert_allclose(np.load(out / 'frame_anomaly_score.npy'), expected.score,
                               atol=1e-6)
    labels = cv2.imread(str(out / 'frame_semantic.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels, expected.labels)
    mask = cv2.imread(str(out / 'frame_anomaly_mask.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask > 0, expected.mask)
    color = cv2.imread(str(out / 'frame_open_set_color.png'))
    assert color.shape == (50, 70, 3)


def test_missing_checkpoint_and_unreadable_image_are_named(tiny_checkpoint_path, tmp_path,
                                                           capsys):
    missing = tmp_path / 'missing.pt'
    assert main(['--checkpoint', str(missing), '--out', str(tmp_path), 'x.png']) == 2
    assert 'missing.pt' in capsys.readouterr().err
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'not a png')
    assert main(['--checkpoint', str(tiny_checkpoint_path), '--device', 'cpu',
                 '--out', str(tmp_path / 'o'), str(bad)]) == 1
    assert 'cannot read image' in capsys.readouterr().err
