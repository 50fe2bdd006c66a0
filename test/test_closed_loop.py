"""Closed loop in real processes: play_bag -> perception_node -> eval_stream, scored exactly."""

import json

import cv2
import numpy as np
import pytest
import torch

from dense_ood_ros.checkpoint import Checkpoint, save_checkpoint
from dense_ood_ros.image_codec import image_to_array
from dense_ood_ros.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from dense_ood_ros.models import ldn121
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.tools.dataset_to_bag import write_bag
from dense_ood_ros.tools.bag_format import IMAGE_TOPIC
from dense_ood_ros.tools.play_bag import sent_per_topic
from dense_ood_ros.tools import export_onnx
from ros_harness import Client, NodeProcess, stamp_ns, ToolProcess, unimportable
from dense_ood_ros.datasets.lost_and_found import FishyscapesLF
from train.data.synthetic import write_lf_layout
from dense_ood_ros.evaluation import ComponentSettings
from train.evaluate import evaluate

pytestmark = pytest.mark.slow
HEIGHT, WIDTH = 64, 128


@pytest.fixture(scope='module')
def cityscapes_checkpoint(tmp_path_factory):
    # The synthetic ground truth holds Cityscapes trainIds, so mIoU needs 19 classes.
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'cityscapes_tiny.pt'
    save_checkpoint(path, Checkpoint(
        arch='ldn121', num_classes=len(CITYSCAPES_CLASSES),
        state_dict=ldn121(len(CITYSCAPES_CLASSES)).state_dict(),
        class_names=list(CITYSCAPES_CLASSES), palette=[list(c) for c in CITYSCAPES_PALETTE],
        input_short_edge=64, threshold=0.5))
    return path


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    return write_lf_layout(tmp_path_factory.mktemp('world'), num_images=6, height=HEIGHT,
                           width=WIDTH)


@pytest.fixture(scope='module')
def threshold(cityscapes_checkpoint, world):
    # The median score of the world's pixels: the mask then splits every frame, so a mask
    # built with any other threshold or comparison shows.
    pipeline = DenseOODPipeline.from_checkpoint(cityscapes_checkpoint, device='cpu')
    samples = FishyscapesLF(world)
    scores = np.concatenate([pipeline.infer(s.image).score.ravel() for s in samples])
    return float(np.median(scores))


@pytest.fixture
def node(cityscapes_checkpoint, threshold):
    # One node per test: its /diagnostics counters run from its start, which the frame
    # accounting compares with what the player sent in that test alone.
    with NodeProcess('-p', f'checkpoint:={cityscapes_checkpoint}', '-p', 'device:=cpu',
                     '-p', f'threshold:={threshold!r}',
                     # An untrained model labels hardly any road: regions count everywhere.
                     '-p', "drivable_classes:=['']", *RELIABLE_REPLAY,
                     '-r', 'image:=/camera/image_raw') as process:
        yield process


SCORE, MASK = '/perception_node/anomaly_score', '/perception_node/anomaly_mask'
# An evaluation replay loses no frame in transport: the camera subscription made reliable
# with the standard QoS overrides (the default is sensor-data, best effort).
RELIABLE_REPLAY = ('-p', 'qos_overrides./camera/image_raw.subscription.reliability:=reliable',
                   '-p', 'qos_overrides./camera/image_raw.subscription.depth:=10')


def _closed_loop(bag, tmp_path, *, rate, frames=0, timeout=10, max_dropped=0.0):
    """Run eval_stream, then play_bag once it is ready.

    Returns (report, eval output, camera frames the player sent, {stamp: (score, mask)}
    of what the node published, recorded here alongside the evaluator).
    """
    report_path = tmp_path / 'report.json'
    client = Client('closed_loop_recorder')
    client.record(SCORE)
    client.record(MASK)
    evaluator = ToolProcess('eval_stream', '--bag', bag, '--json', report_path,
                            '--timeout', timeout, '--start-timeout', 60,
                            '--frames-dir', tmp_path / 'frames', '--frames', frames,
                            '--max-dropped', max_dropped)
    player = None
    try:
        assert client.spin_until(lambda: not evaluator.alive()
                                 or 'eval_stream: ready' in evaluator.output, 60), \
            evaluator.output
        # Two subscribers on the camera topic: the node and the evaluator (which subscribes
        # there only after it has found the node's outputs).
        player = ToolProcess('play_bag', bag, '--rate', rate, '--wait-for-subscribers', 2,
                             '--delay', 1.0)
        client.spin_until(lambda: not evaluator.alive(), 120)
        assert player.wait(60) == 0, player.output
        assert evaluator.wait(10) == 0, evaluator.output
        published = {}
        for msg in client.messages(SCORE):
            published.setdefault(stamp_ns(msg), [None, None])[0] = image_to_array(msg)
        for msg in client.messages(MASK):
            published.setdefault(stamp_ns(msg), [None, None])[1] = image_to_array(msg)
    finally:
        client.close()
        evaluator.kill()
        if player is not None:
            player.kill()
    sent = sent_per_topic(player.output)[IMAGE_TOPIC]
    return json.loads(report_path.read_text()), evaluator.output, sent, published


def _train_evaluate(checkpoint, threshold, samples):
    """Return (table row, component metrics) of train.evaluate at the node's settings."""
    pipeline = DenseOODPipeline.from_checkpoint(checkpoint, device='cpu')
    pipeline.threshold = threshold
    evaluation = evaluate(pipeline, samples, [(pipeline.score, pipeline.temperature)],
                          progress=False, components=ComponentSettings(drivable=()))
    (row,), (components,) = evaluation.rows, evaluation.components
    return row, components


def _assert_mask_is_score_above_threshold(published, threshold):
    """Every frame's ~/anomaly_mask is 255 exactly where its ~/anomaly_score > threshold."""
    assert published
    for stamp, (score, mask) in published.items():
        assert score is not None and mask is not None, stamp
        assert 0 < np.count_nonzero(mask) < mask.size, 'the threshold splits no frame'
        np.testing.assert_array_equal(mask, np.where(score > threshold, 255, 0).astype(np.uint8),
                                      err_msg=f'frame {stamp}')


def test_slow_replay_scores_every_frame_like_train_evaluate(node, world, cityscapes_checkpoint,
                                                            threshold, tmp_path):
    bag = tmp_path / 'bag'
    samples = FishyscapesLF(world)
    write_bag(samples, bag, fps=4, distro='jazzy', storage='mcap', progress=False)
    # 0.5 s between frames: the node drops a frame only if one takes over 1 s (two arrive
    # while it works), far beyond this model's time even on a loaded 2-core machine.
    report, output, sent, published = _closed_loop(bag, tmp_path, rate=0.5, frames=2)

    assert node.alive(), node.output
    # What the player sent, what the node counted itself and what was scored all agree.
    assert sent == len(samples)
    assert report['node_frames'] == {'received': sent, 'processed': sent, 'dropped': 0,
                                     'rejected': 0}, output
    assert (report['frames_processed'], report['frames_dropped']) == (sent, 0), output
    # Every output matched a frame of the bag, once.
    assert (report['frames_unexpected'], report['frames_repeated']) == (0, 0), output
    # The node's default operating point comes from the checkpoint: the same here.
    row, components = _train_evaluate(cityscapes_checkpoint, threshold, samples)
    for key in ('ap', 'fpr95', 'auroc', 'miou'):
        assert report[key] == pytest.approx(row[key], abs=1e-6), key
    # The node's ~/anomaly_detections, scored at component level, equal the regions that
    # train.evaluate finds with the node's default settings.
    assert components['truth_components'] > 0 and components['predicted_components'] > 0
    for key in ('siou', 'ppv', 'f1_mean', 'truth_components', 'predicted_components'):
        assert report[key] == pytest.approx(components[key], abs=1e-9), key
    outliers = sum(int((s.ood == 1).sum()) for s in samples)
    valid = sum(int((s.ood != 255).sum()) for s in samples)
    assert report['anomaly_pixel_share'] == pytest.approx(outliers / valid)
    # Latency needs the frame's arrival on the camera topic too, which the evaluator takes
    # best-effort (it must match any publisher); a frame missed there only has no latency.
    assert len(samples) // 2 <= report['latency_frames'] <= len(samples)
    assert 0 < report['latency_ms_p50'] <= report['latency_ms_p95'] < 10_000
    assert len(report['frames_written']) == 2
    for path in report['frames_written']:
        assert cv2.imread(path).shape == (HEIGHT, 3 * WIDTH, 3)
    assert len(published) == len(samples)
    _assert_mask_is_score_above_threshold(published, threshold)


def test_burst_counts_every_frame_as_processed_or_dropped(node, world, threshold, tmp_path):
    bag = tmp_path / 'burst'
    # Twelve frames 1 ms apart: far faster than the node's forward pass, so it drops some.
    frames = FishyscapesLF(world)
    write_bag([frames[i % len(frames)] for i in range(12)], bag, fps=1000, progress=False)
    report, output, sent, published = _closed_loop(bag, tmp_path, rate=1.0, timeout=3,
                                                   max_dropped=1.0)

    assert node.alive(), node.output
    assert sent == report['frames_sent'] == 12
    node_frames = report['node_frames']
    # Best-effort input of depth 1: DDS may overwrite a frame before the node's callback
    # takes it, so the node receives at most what was sent; of those it processes or drops
    # each one, and the evaluator scores exactly what it processed.
    assert 1 <= node_frames['received'] <= sent, output
    assert node_frames['processed'] + node_frames['dropped'] == node_frames['received'], output
    # Far faster than the node: frames were lost in DDS or dropped by the node, or both.
    assert 1 <= node_frames['processed'] < sent, output
    assert report['frames_processed'] == node_frames['processed'], (output, report)
    assert report['frames_dropped'] == sent - node_frames['processed'], output
    assert report['ap'] is not None
    _assert_mask_is_score_above_threshold(published, threshold)


@pytest.fixture(scope='module')
def onnx_model(cityscapes_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp('onnx') / 'cityscapes_tiny.onnx'
    export_onnx.export(cityscapes_checkpoint, out, height=HEIGHT, width=WIDTH, log=lambda _: None)
    return out


def test_the_onnx_model_closes_the_loop_in_a_node_without_torch(
        onnx_model, world, cityscapes_checkpoint, threshold, tmp_path):
    shadow = unimportable(tmp_path / 'shadow', 'torch', 'torchvision')
    bag = tmp_path / 'bag'
    samples = FishyscapesLF(world)
    write_bag(samples, bag, fps=4, distro='jazzy', storage='mcap', progress=False)
    with NodeProcess('-p', f'checkpoint:={onnx_model}', '-p', f'threshold:={threshold!r}',
                     '-p', "drivable_classes:=['']", *RELIABLE_REPLAY,
                     '-r', 'image:=/camera/image_raw', shadow=shadow) as node:
        report, output, sent, published = _closed_loop(bag, tmp_path, rate=0.5)
        assert node.alive(), node.output
    assert 'onnxruntime:CPUExecutionProvider' in node.output
    assert (report['frames_processed'], report['frames_dropped']) == (sent, 0), output
    # The same frames through the PyTorch checkpoint: equal metrics, to well within the
    # 0.2 AP points the backends may differ by.
    row, components = _train_evaluate(cityscapes_checkpoint, threshold, samples)
    for key in ('ap', 'fpr95', 'auroc', 'miou'):
        assert report[key] == pytest.approx(row[key], abs=1e-3), key
    assert report['f1_mean'] == pytest.approx(components['f1_mean'], abs=0.02)
    _assert_mask_is_score_above_threshold(published, threshold)
