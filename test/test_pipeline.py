"""DenseOODPipeline: numpy frames in, outputs at the input resolution, bad input named."""

import cv2
import numpy as np
import pytest
import torch

from conftest import make_tiny_checkpoint
from dense_ood_ros.checkpoint import build_model_from_checkpoint, CheckpointError
from dense_ood_ros.devices import resolve_device
from dense_ood_ros.pipeline import (
    DenseOODPipeline, network_size, pipeline_from_params, pipeline_values, resolve_settings)
from dense_ood_ros.scores import entropy, msp
from dense_ood_ros.visualize import overlay


@pytest.fixture
def pipeline(tiny_checkpoint_path):
    return DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')


def _frame(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize('height,width', [(48, 80), (75, 101), (64, 64), (130, 40)])
def test_outputs_are_at_input_resolution(pipeline, height, width):
    result = pipeline.infer(_frame(height, width))
    assert result.labels.shape == (height, width) and result.labels.dtype == np.uint8
    assert result.score.shape == (height, width) and result.score.dtype == np.float32
    assert result.mask.shape == (height, width) and result.mask.dtype == bool
    assert result.open_set.shape == (height, width) and result.open_set.dtype == np.uint8
    assert result.labels.max() < pipeline.num_classes
    # MSP at any temperature lies in [0, 1 - 1/C].
    assert 0.0 <= result.score.min() and result.score.max() <= 1 - 1 / 3 + 1e-6


def test_outputs_equal_a_hand_run_of_the_model(tiny_checkpoint_path):
    ckpt = make_tiny_checkpoint()
    pipe = DenseOODPipeline.from_checkpoint(ckpt, device='cpu', score='entropy',
                                            temperature=2.0, threshold=0.9)
    rgb = _frame(96, 150, seed=3)
    height, width = network_size(96, 150, 64)
    assert (height, width) == (64, 100)
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(resized).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(ckpt.mean).view(1, 3, 1, 1)) / torch.tensor(ckpt.std).view(1, 3, 1, 1)
    x = torch.nn.functional.pad(x, (0, 128 - width, 0, 64 - height))
    model = build_model_from_checkpoint(ckpt).eval()
    with torch.no_grad():
        logits = model(x)[:, :, :height, :width]
    score = entropy(logits, 2.0)[0].numpy()
    labels = logits.argmax(1)[0].numpy().astype(np.uint8)

    result = pipe.infer(rgb)
    # The paper's way: logits upsampled bilinearly to the frame, then score and argmax.
    full = torch.nn.functional.interpolate(logits, size=(96, 150), mode='bilinear',
                                           align_corners=False)
    np.testing.assert_allclose(result.score, entropy(full, 2.0)[0].numpy(), atol=1e-4)
    assert (result.labels != full.argmax(1)[0].numpy()).mean() < 1e-3
    # The cheaper 'scores' mode resizes the network-resolution maps instead.
    shortcut = DenseOODPipeline.from_checkpoint(ckpt, device='cpu', score='entropy',
                                                temperature=2.0, threshold=0.9,
                                                upsample='scores').infer(rgb)
    expected_score = cv2.resize(score, (150, 96), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(shortcut.score, expected_score, atol=1e-4)
    expected_labels = cv2.resize(labels, (150, 96), interpolation=cv2.INTER_NEAREST)
    assert (shortcut.labels != expected_labels).mean() < 1e-3
    assert not np.allclose(shortcut.score, result.score, atol=1e-4)
    np.testing.assert_array_equal(result.mask, result.score > 0.9)
    np.testing.assert_array_equal(result.open_set[result.mask], 3)
    np.testing.assert_array_equal(result.open_set[~result.mask], result.labels[~result.mask])


def test_runtime_changes_of_score_temperature_threshold(pipeline):
    rgb = _frame(64, 96, seed=5)
    pipeline.score, pipeline.temperature = 'msp', 1.0
    threshold = float(np.median(pipeline.infer(rgb).score))
    pipeline.threshold = threshold
    at_median = pipeline.infer(rgb)
    assert 0.2 < at_median.mask.mean() < 0.8
    pipeline.threshold = 2.0
    assert not pipeline.infer(rgb).mask.any()
    pipeline.temperature = 10.0
    # Higher temperature flattens the softmax: MSP can only grow.
    assert np.all(pipeline.infer(rgb).score >= at_median.score - 1e-6)
    for name, value in (('score', 'energy'), ('temperature', 0.0), ('temperature', -1),
                        ('threshold', float('nan')), ('threshold', 'high')):
        with pytest.raises(ValueError, match=name):
            setattr(pipeline, name, value)
    pipeline.threshold = 0.5


def test_batched_frames_come_back_in_input_order_equal_to_single_frames(pipeline):
    # Sizes interleaved (A, B, A, C, B): grouping by network size must not reorder results,
    # or the node would publish one camera's outputs on another camera's topics.
    frames = [_frame(64, 96, seed=1), _frame(32, 48, seed=2), _frame(64, 96, seed=3),
              _frame(80, 80, seed=4), _frame(32, 48, seed=5)]
    batched = pipeline.infer_batch(frames)
    singles = [pipeline.infer(rgb) for rgb in frames]
    assert len(batched) == len(frames)
    # Which frames shared a forward pass (the node reports it): at short edge 64, A (64x96)
    # and B (32x48, upscaled) both enter the network at 64x96; C (80x80) alone at 64x64.
    assert [result.batch for result in batched] == [4, 4, 4, 1, 4]
    assert all(single.batch == 1 for single in singles)
    for index, (result, single) in enumerate(zip(batched, singles)):
        assert result.score.shape == frames[index].shape[:2]
        # A batched convolution may round differently from a single one: equal up to that.
        np.testing.assert_allclose(result.score, single.score, atol=1e-5,
                                   err_msg=f'frame {index}')
        assert (result.labels != single.labels).mean() < 1e-3, f'frame {index}'
    # Frames of one size differ by far more than that rounding, so a result published for
    # the wrong frame of its group cannot pass the checks above.
    for first, second in ((0, 2), (1, 4)):
        assert np.abs(singles[first].score - singles[second].score).max() > 1e-2


def test_msp_score_matches_scores_module(pipeline):
    pipeline.score, pipeline.temperature = 'msp', 10.0
    rgb = _frame(64, 64, seed=9)
    ref = pipeline.model(pipeline.preprocess([rgb], (64, 64))).detach()
    np.testing.assert_allclose(pipeline.infer(rgb).score, msp(ref, 10.0)[0].numpy(), atol=1e-5)


@pytest.mark.parametrize('bad,match', [
    (np.zeros((8, 8, 3), dtype=np.float32), 'dtype float32'),
    (np.zeros((8, 8), dtype=np.uint8), r'shape \(8, 8\)'),
    (np.zeros((8, 8, 4), dtype=np.uint8), r'shape \(8, 8, 4\)'),
    (np.zeros((0, 8, 3), dtype=np.uint8), 'non-empty'),
    ([[0, 0, 0]], 'list'),
])
def test_bad_frames_raise_value_error_saying_what_was_expected(pipeline, bad, match):
    with pytest.raises(ValueError, match=match):
        pipeline.infer(bad)


def test_half_precision_needs_cuda(tiny_checkpoint_path):
    with pytest.raises(ValueError, match='half precision needs a CUDA device'):
        DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu', half=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_fp16_agrees_with_cpu(tiny_checkpoint_path):
    rgb = _frame(96, 160, seed=4)
    cpu = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu').infer(rgb)
    gpu = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cuda',
                                           half=True).infer(rgb)
    np.testing.assert_allclose(gpu.score, cpu.score, atol=2e-2)
    assert (gpu.labels != cpu.labels).mean() < 0.02


def test_infer_scores_equals_infer_for_every_setting(tiny_checkpoint_path):
    pipe = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    rgb = _frame(70, 90, seed=11)
    settings = [('msp', 1.0), ('entropy', 2.0), ('msp', 10.0)]
    labels, maps = pipe.infer_scores(rgb, settings)
    assert len(maps) == 3
    for (name, temperature), score_map in zip(settings, maps):
        pipe.score, pipe.temperature = name, temperature
        single = pipe.infer(rgb)
        np.testing.assert_array_equal(score_map, single.score)
        np.testing.assert_array_equal(labels, single.labels)


def test_overlay_blends_camera_and_colour_by_alpha():
    rgb = np.full((4, 6, 3), 200, np.uint8)
    rgb[:, :, 0] = 10
    color = np.zeros((4, 6, 3), np.uint8)
    color[..., 2] = 255
    # A padded camera row (rgba8 views are strided) must blend the same way.
    strided = np.dstack([rgb, np.zeros((4, 6, 1), np.uint8)])[..., :3]
    for camera in (rgb, strided):
        np.testing.assert_array_equal(overlay(camera, color, 0.0), rgb)
        np.testing.assert_array_equal(overlay(camera, color, 1.0), color)
        half = overlay(camera, color, 0.5).astype(int)
        assert np.abs(half - (rgb.astype(int) + color) / 2).max() <= 1
    with pytest.raises(ValueError, match='alpha'):
        overlay(rgb, color, 1.5)


def test_weights_that_do_not_fit_name_the_file_the_checkpoint_came_from():
    ckpt = make_tiny_checkpoint()
    ckpt.num_classes, ckpt.class_names = 4, ckpt.class_names + ['extra']
    ckpt.palette = ckpt.palette + [[1, 2, 3]]
    with pytest.raises(CheckpointError, match='vehicle.pt: weights do not fit'):
        pipeline_from_params(ckpt, {'device': 'cpu'}, path='/maps/vehicle.pt')


def test_the_parameter_files_unset_spellings_become_none_and_take_the_checkpoints_values():
    checkpoint = make_tiny_checkpoint()
    values = pipeline_values({'score': '', 'temperature': 0.0, 'threshold': -1.0,
                              'input_short_edge': 0, 'not_a_pipeline_key': 1})
    assert {key: values[key] for key in ('score', 'temperature', 'threshold',
                                         'input_short_edge')} == dict.fromkeys(
        ('score', 'temperature', 'threshold', 'input_short_edge'))
    assert 'not_a_pipeline_key' not in values
    assert pipeline_values(values) == values  # None stays None
    assert resolve_settings(checkpoint) == (
        checkpoint.default_score, checkpoint.temperatures[checkpoint.default_score],
        checkpoint.threshold)
    assert resolve_settings(checkpoint, score='entropy', temperature=3, threshold=0.0) == (
        'entropy', 3.0, 0.0)
    set_values = pipeline_values({'score': 'msp', 'temperature': 2.0, 'threshold': 0.0})
    assert (set_values['score'], set_values['temperature'], set_values['threshold']) == (
        'msp', 2.0, 0.0)


@pytest.mark.parametrize('setting, match', [
    ({'score': ''}, "score '': expected one of"),
    ({'temperature': 0.0}, 'temperature 0.0 must be positive'),
    ({'threshold': -1.0}, 'threshold -1.0 must be >= 0'),
])
def test_below_the_ros_boundary_only_none_means_unset(setting, match):
    with pytest.raises(ValueError, match=match):
        resolve_settings(make_tiny_checkpoint(), **setting)


@pytest.mark.parametrize('requested, cuda_count, expected', [
    ('auto', 0, 'cpu'), ('auto', 2, 'cuda'), ('cpu', 2, 'cpu'), ('cuda:1', 2, 'cuda:1')])
def test_device_settings_resolve_to_what_this_process_has(requested, cuda_count, expected):
    assert str(resolve_device(requested, cuda_count=cuda_count)) == expected


@pytest.mark.parametrize('requested, cuda_count, match', [
    ('gpu', 0, "device 'gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ('cuda', 0, "device 'cuda' requested but CUDA is not available"),
    ('cuda:2', 2, r"device 'cuda:2' needs GPU 2 but this process sees 2$"),
])
def test_a_device_this_process_lacks_is_named(requested, cuda_count, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(requested, cuda_count=cuda_count)
