"""ONNX export and the ONNX Runtime backend: equal to PyTorch, refusing what is wrong."""

import json
import pathlib
import time

import numpy as np
import onnx
import pytest
import torch

from conftest import TINY_CLASSES
from dense_ood_ros.checkpoint import CheckpointError, load_checkpoint
from dense_ood_ros.model_loading import load_pipeline, onnx_providers
from dense_ood_ros.onnx_pipeline import (choose_providers, METADATA_KEY, OnnxPipeline,
                                         open_session)
from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.tools import export_onnx
from ros_harness import NodeProcess, ROOT

pytestmark = pytest.mark.slow
HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope='module')
def exported(tiny_checkpoint_path, tmp_path_factory):
    """The tiny checkpoint exported for a 64x48 camera (about a minute: torch.export)."""
    out = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    assert export_onnx.main(['--checkpoint', str(tiny_checkpoint_path), '--out', str(out),
                             '--height', str(HEIGHT), '--width', str(WIDTH)]) == 0
    return out


def _frames(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def test_exported_logits_and_outputs_equal_pytorchs(exported, tiny_checkpoint_path):
    onnx_pipeline = OnnxPipeline(exported)
    torch_pipeline = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    frames = _frames(3)
    size = (64, 85)  # network_size(48, 64, 64)
    ours = onnx_pipeline._logits(frames, size)
    with torch.inference_mode():
        reference = torch_pipeline._logits(frames, size).numpy()
    assert ours.shape == reference.shape == (3, len(TINY_CLASSES), *size)
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()
    for score in ('msp', 'entropy'):
        for pipeline in (onnx_pipeline, torch_pipeline):
            pipeline.score, pipeline.temperature = score, 2.0
        for rgb, a, b in zip(frames, onnx_pipeline.infer_batch(frames),
                             torch_pipeline.infer_batch(frames)):
            np.testing.assert_allclose(a.score, b.score, atol=1e-4)
            # Labels agree except where the two best classes are (nearly) tied.
            ordered = np.sort(_full_logits(torch_pipeline, rgb), axis=-1)
            decided = ordered[..., -1] - ordered[..., -2] > 1e-4
            np.testing.assert_array_equal(a.labels[decided], b.labels[decided])
            assert a.batch == b.batch == 3


def _full_logits(pipeline, rgb):
    """(H, W, K) logits of the torch pipeline at the frame's resolution."""
    from dense_ood_ros.pipeline import network_size

    with torch.inference_mode():
        logits = pipeline._logits([rgb], network_size(*rgb.shape[:2],
                                                      pipeline.input_short_edge))
        return pipeline._at_resolution(logits, rgb.shape[:2])[0].permute(1, 2, 0).numpy()


def test_metadata_carries_everything_the_node_reads(exported, tiny_checkpoint_path):
    _, info, _ = open_session(exported)
    checkpoint = load_checkpoint(tiny_checkpoint_path)
    assert info.class_names == list(checkpoint.class_names)
    assert info.palette == [list(c) for c in checkpoint.palette]
    assert info.mean == pytest.approx(checkpoint.mean) and info.std == pytest.approx(
        checkpoint.std)
    assert (info.input_short_edge, info.default_score, info.temperatures, info.threshold) == (
        checkpoint.input_short_edge, checkpoint.default_score, checkpoint.temperatures,
        pytest.approx(checkpoint.threshold))
    assert info.source_checkpoint == str(tiny_checkpoint_path)
    assert len(info.source_sha256) == 64 and info.input_size == [64, 96]
    # Run-time settings behave as on the torch backend; unset values are the model's.
    _, pipeline = load_pipeline(str(exported), {'score': '', 'temperature': 0.0,
                                                'threshold': -1.0, 'device': 'cpu'})
    assert (pipeline.score, pipeline.temperature, pipeline.threshold) == (
        checkpoint.default_score, checkpoint.temperatures[checkpoint.default_score],
        checkpoint.threshold)
    pipeline.threshold = 0.0
    assert pipeline.infer(_frames(1)[0]).mask.all()
    with pytest.raises(ValueError, match='temperature'):
        pipeline.temperature = -1.0


def _rewrite(exported, tmp_path, name, change):
    model = onnx.load(exported)
    change(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_files_without_metadata_of_another_class_set_or_layout_are_refused(
        exported, tmp_path):
    bare = _rewrite(exported, tmp_path, 'bare.onnx', lambda m: m.metadata_props.clear())
    with pytest.raises(CheckpointError, match='bare.onnx.*no dense_ood_ros metadata'):
        OnnxPipeline(bare)

    def five_classes(model):
        entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
        payload = json.loads(entry.value)
        payload['class_names'] = [f'c{i}' for i in range(5)]
        payload['palette'] = [[0, 0, 0]] * 5
        entry.value = json.dumps(payload)
    other = _rewrite(exported, tmp_path, 'other.onnx', five_classes)
    with pytest.raises(CheckpointError, match='gives 3 classes but its metadata names 5'):
        OnnxPipeline(other)

    # A channels-last graph with the right metadata: the layout alone is wrong.
    transpose = onnx.helper.make_node('Transpose', ['image'], ['logits'], perm=[0, 3, 1, 2])
    graph = onnx.helper.make_graph(
        [transpose], 'nhwc',
        [onnx.helper.make_tensor_value_info('image', onnx.TensorProto.FLOAT,
                                            ['n', 64, 96, 3])],
        [onnx.helper.make_tensor_value_info('logits', onnx.TensorProto.FLOAT,
                                            ['n', 3, 64, 96])])
    nhwc = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid('', 18)])
    nhwc.metadata_props.extend(onnx.load(exported).metadata_props)
    layout = tmp_path / 'nhwc.onnx'
    onnx.save(nhwc, layout)
    with pytest.raises(CheckpointError, match=r'nhwc.onnx.*\(N, 3, H, W\)'):
        OnnxPipeline(layout)
    with pytest.raises(CheckpointError, match='no such file'):
        OnnxPipeline(tmp_path / 'missing.onnx')
    # The node: one error naming the file, exit code 1, no traceback.
    with NodeProcess('-p', f'checkpoint:={other}') as node:
        assert node.wait(timeout=60.0) == 1
    assert 'other.onnx' in node.output and 'Traceback' not in node.output


def test_a_frame_size_the_fixed_model_was_not_exported_for_is_a_clear_error(exported):
    pipeline = OnnxPipeline(exported)
    with pytest.raises(ValueError, match='exported for a 96x64 network input'):
        pipeline.infer(np.zeros((HEIGHT, 2 * WIDTH, 3), np.uint8))


def test_exporter_refuses_when_onnx_runtime_and_pytorch_differ(tiny_checkpoint_path, tmp_path,
                                                               capsys):
    out = tmp_path / 'strict.onnx'
    assert export_onnx.main(['--checkpoint', str(tiny_checkpoint_path), '--out', str(out),
                             '--height', '32', '--width', '32', '--tolerance', '0']) == 1
    assert 'nothing written' in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # not even a temporary file
    assert export_onnx.main(['--checkpoint', str(tmp_path / 'none.pt'), '--out',
                             str(out)]) == 2


def test_providers_fall_back_in_order():
    assert choose_providers(['TensorrtExecutionProvider', 'CPUExecutionProvider'],
                            ['CPUExecutionProvider']) == (
        ['CPUExecutionProvider'], ['TensorrtExecutionProvider'])
    with pytest.raises(ValueError, match='none of the ONNX Runtime providers'):
        choose_providers(['CUDAExecutionProvider'], ['CPUExecutionProvider'])
    assert onnx_providers('cpu', ['CUDAExecutionProvider']) == ('CPUExecutionProvider',)


def test_the_demo_checkpoint_exports_within_tolerance_on_a_street_frame(tmp_path):
    # The exporter refuses beyond 1e-4 of the largest logit on the frame it is given: a
    # synthetic street scene at the demo's camera size, through the shipped checkpoint.
    from train.data.synthetic import render_scene

    checkpoint = pathlib.Path(ROOT) / 'demo' / 'ldn121_demo.pt'
    if not checkpoint.is_file():
        pytest.skip('no shipped demo checkpoint')
    frame = render_scene(1, height=256, width=512, anomalies=True).image
    out = tmp_path / 'demo.onnx'
    difference = export_onnx.export(checkpoint, out, height=256, width=512, image=frame,
                                    log=lambda _: None)
    assert difference <= 1e-4 and out.is_file()
    assert OnnxPipeline(out).infer(frame).score.shape == (256, 512)


def test_frames_the_fixed_model_cannot_take_make_health_error_and_the_node_go_on(exported):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    from ros_harness import Client, frame_message
    from test_node import node_args

    client = Client()
    try:
        client.record('/diagnostics', DiagnosticArray)
        client.record('/perception_node/anomaly_score')
        publisher = client.publisher('/cam/image')
        wrong = frame_message(np.zeros((HEIGHT, 2 * WIDTH, 3), np.uint8), stamp_ns=1)
        right = frame_message(np.zeros((HEIGHT, WIDTH, 3), np.uint8), stamp_ns=2)

        def newest():
            statuses = [s for a in client.messages('/diagnostics') for s in a.status]
            return statuses[-1] if statuses else None

        def failing():
            status = newest()
            return status is not None and 'inference failed' in status.message

        with NodeProcess(*node_args(exported, '-p', 'stale_input_s:=600.0')) as node:
            assert client.wait_for_subscriber(publisher, timeout=60.0), node.output
            deadline = time.monotonic() + 60.0
            while not failing() and time.monotonic() < deadline:
                publisher.publish(wrong)  # the first may be lost to discovery
                client.spin_until(failing, 1.0)
            assert failing(), node.output
            assert newest().level == DiagnosticStatus.ERROR
            # The node goes on: a frame of the exported size is served.
            assert client.handshake(publisher, right, ['/perception_node/anomaly_score']), \
                node.output
        assert 'exported for a 96x64 network input' in node.output
    finally:
        client.close()


def test_an_fp16_export_keeps_the_float32_interface_and_stays_close(tiny_checkpoint_path,
                                                                    tmp_path):
    out = tmp_path / 'tiny16.onnx'
    assert export_onnx.main(['--checkpoint', str(tiny_checkpoint_path), '--out', str(out),
                             '--height', str(HEIGHT), '--width', str(WIDTH), '--fp16']) == 0
    half = OnnxPipeline(out)
    assert half.info.precision == 'fp16' and half.half
    assert half.session.get_inputs()[0].type == 'tensor(float)'
    full = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    for rgb in _frames(2, seed=3):
        a, b = half.infer(rgb), full.infer(rgb)
        np.testing.assert_allclose(a.score, b.score, atol=1e-2)
        assert np.mean(a.labels == b.labels) > 0.99
