"""The demo: the shipped checkpoint, its packing, and `make demo`'s script end to end."""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import make_tiny_checkpoint
from dense_ood_ros.checkpoint import load_checkpoint, save_checkpoint
from dense_ood_ros.pipeline import DenseOODPipeline
from ros_harness import ros_environment, ROOT
from train.data.synthetic import render_scene

sys.path.insert(0, os.path.join(ROOT, 'demo'))
from pack_checkpoint import pack  # noqa: E402

SHIPPED = os.path.join(ROOT, 'demo', 'ldn121_demo.pt')


def test_packing_halves_the_file_and_keeps_what_the_node_publishes(tmp_path):
    source, packed = tmp_path / 'full.pt', tmp_path / 'packed.pt'
    save_checkpoint(source, make_tiny_checkpoint())
    pack(source, packed, command='python -m train.joint --config x.yaml')
    assert os.path.getsize(packed) < 0.55 * os.path.getsize(source)
    ckpt = load_checkpoint(packed)
    assert ckpt.train['command'] == 'python -m train.joint --config x.yaml'
    dtypes = {value.dtype for value in ckpt.state_dict.values() if value.is_floating_point()}
    assert dtypes == {torch.float16}
    rgb = render_scene(3, height=64, width=128, anomalies=True).image
    full = DenseOODPipeline.from_checkpoint(str(source), device='cpu').infer(rgb)
    half = DenseOODPipeline.from_checkpoint(str(packed), device='cpu').infer(rgb)
    assert full.score.dtype == half.score.dtype == np.float32
    np.testing.assert_allclose(half.score, full.score, atol=2e-2)
    assert (half.labels == full.labels).mean() > 0.95


def test_the_shipped_demo_checkpoint_records_how_it_was_made():
    assert os.path.getsize(SHIPPED) <= 25 * 2 ** 20
    ckpt = load_checkpoint(SHIPPED)
    assert ckpt.arch == 'ldn121' and ckpt.num_classes == 19
    assert ckpt.train['command'].startswith(
        'python -m train.joint --config config/train_demo.yaml')
    assert re.fullmatch(r'[0-9a-f]{40}', ckpt.train['git_commit'])
    assert ckpt.train['config']['outliers']['mode'] == 'rnvp'
    assert ckpt.flow_state_dict is not None


@pytest.mark.slow
def test_demo_replays_a_bag_through_the_node_and_leaves_report_and_frames(tmp_path):
    out = tmp_path / 'demo_out'
    env = ros_environment()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'demo', 'run_demo.py'), '--out', str(out),
         '--images', '10', '--height', '128', '--width', '256', '--fps', '2', '--panels', '2'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / 'report.json').read_text())
    typed = {'ap': float, 'fpr95': float, 'auroc': float, 'miou': float,
             'anomaly_pixel_share': float, 'frames_sent': int, 'frames_processed': int,
             'frames_dropped': int, 'latency_ms_p50': float, 'latency_ms_p95': float,
             'player_frames_sent': int, 'node_frames': dict}
    for key, kind in typed.items():
        assert isinstance(report[key], kind), (key, report[key])
    # The replay rate is one the node keeps: every frame the player sent reached the node,
    # was processed by it (its own /diagnostics) and scored by the evaluator; none dropped.
    node = report['node_frames']
    assert report['player_frames_sent'] == 10
    assert node == {'received': 10, 'processed': 10, 'dropped': 0, 'rejected': 0}
    assert (report['frames_processed'], report['frames_dropped']) == (10, 0)
    stream = json.loads((out / 'stream.json').read_text())
    assert (stream['frames_unexpected'], stream['frames_repeated']) == (0, 0)
    assert stream['latency_frames'] >= 1
    assert 0 < report['latency_ms_p50'] <= report['latency_ms_p95']
    # A working model: AP well above a random scorer's (the anomaly pixel share).
    assert 0 < report['anomaly_pixel_share'] and 3 * report['anomaly_pixel_share'] <= \
        report['ap'] <= 1, report
    frames = sorted((out / 'frames').glob('*.png'))
    assert 1 <= len(frames) <= 2
    panel = cv2.imread(str(frames[0]))
    assert panel.shape == (128, 3 * 256, 3)
    assert 'AP' in result.stdout and 'random AP' in result.stdout
