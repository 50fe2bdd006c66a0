"""~/anomaly_detections through real rclpy, with the prebuilt vision_msgs (make test sets it)."""

import json

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from dense_ood_ros.pipeline import DenseOODPipeline
from dense_ood_ros.regions import find_regions
from ros_harness import Client, frame_message, NodeProcess, stamp_ns
from test_node import diagnostic_values, node_args, set_parameter

pytestmark = pytest.mark.slow
vision_msgs = pytest.importorskip(
    'vision_msgs.msg', reason='vision_msgs is not importable: run through `make test`, which '
                              'puts ../shared/vision_msgs on the paths')
TOPIC = '/perception_node/anomaly_detections'
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture
def client():
    client = Client()
    yield client
    client.close()


def _frame_and_threshold(checkpoint, seed=4, height=48, width=64):
    """A frame, and a threshold that leaves a few anomalous blobs in it."""
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pipeline = DenseOODPipeline.from_checkpoint(checkpoint, device='cpu')
    pipeline.threshold = float(np.quantile(pipeline.infer(rgb).score, 0.9))
    return rgb, pipeline


def _boxes(msg):
    return [(round(d.bbox.center.position.x - (d.bbox.size_x - 1) / 2),
             round(d.bbox.center.position.y - (d.bbox.size_y - 1) / 2),
             round(d.bbox.size_x), round(d.bbox.size_y)) for d in msg.detections]


def test_detections_carry_the_input_header_and_equal_the_regions_of_the_pipeline(
        client, tiny_checkpoint_path):
    client.record(TOPIC, vision_msgs.Detection2DArray)
    publisher = client.publisher('/cam/image')
    rgb, pipeline = _frame_and_threshold(tiny_checkpoint_path)
    expected = pipeline.infer(rgb)
    regions = find_regions(expected.score, expected.labels, threshold=pipeline.threshold,
                           drivable=(0,), min_area=3)
    assert len(regions) >= 2, 'the frame should hold several regions'
    args = node_args(tiny_checkpoint_path, '-p', f'threshold:={pipeline.threshold!r}',
                     '-p', 'region_min_area:=3', '-p', 'region_min_road_share:=0.0')
    with NodeProcess(*args) as node:
        msg = frame_message(rgb, stamp_ns=7_000_000_123, frame_id='front_cam')
        assert client.handshake(publisher, msg, [TOPIC]), node.output
    received = client.messages(TOPIC)[0]
    assert stamp_ns(received) == 7_000_000_123 and received.header.frame_id == 'front_cam'
    assert _boxes(received) == [r.box for r in regions]
    for detection, region in zip(received.detections, regions):
        assert stamp_ns(detection) == 7_000_000_123
        (result,) = detection.results
        assert result.hypothesis.class_id == '3'  # the open-set id of the 3-class model
        assert result.hypothesis.score == pytest.approx(region.peak, abs=1e-6)


def test_region_parameters_change_at_run_time_and_bad_values_are_refused(
        client, tiny_checkpoint_path):
    client.record(TOPIC, vision_msgs.Detection2DArray)
    publisher = client.publisher('/cam/image')
    rgb, pipeline = _frame_and_threshold(tiny_checkpoint_path)
    expected = pipeline.infer(rgb)
    everywhere = find_regions(expected.score, expected.labels, threshold=pipeline.threshold,
                              drivable=(), min_area=3, region_score='mean')
    near_road = find_regions(expected.score, expected.labels, threshold=pipeline.threshold,
                             drivable=(0,), min_area=3)
    assert len(everywhere) > len(near_road), 'the road filter should matter in this frame'
    msg = frame_message(rgb, stamp_ns=10**9)

    def next_detections():
        count = len(client.messages(TOPIC))
        publisher.publish(msg)
        assert client.spin_until(lambda: len(client.messages(TOPIC)) > count, 30.0)
        return client.messages(TOPIC)[-1]

    args = node_args(tiny_checkpoint_path, '-p', f'threshold:={pipeline.threshold!r}',
                     '-p', 'region_min_area:=3', '-p', 'region_min_road_share:=0.0')
    with NodeProcess(*args) as node:
        assert client.handshake(publisher, msg, [TOPIC]), node.output
        assert set_parameter(client, 'drivable_classes', ['']).successful
        assert set_parameter(client, 'region_score', 'mean').successful
        latest = next_detections()
        assert _boxes(latest) == [r.box for r in everywhere]
        scores = [d.results[0].hypothesis.score for d in latest.detections]
        assert scores == pytest.approx([r.mean for r in everywhere], abs=1e-6)
        # Seen in 2 of the last 3 frames: the first frame after the change reports nothing.
        assert set_parameter(client, 'region_window', 3).successful
        assert set_parameter(client, 'region_persistence', 2).successful
        assert next_detections().detections == []
        assert _boxes(next_detections()) == [r.box for r in everywhere]
        refused = set_parameter(client, 'region_persistence', 4)
        assert not refused.successful and 'region_window' in refused.reason
        refused = set_parameter(client, 'drivable_classes', ['runway'])
        assert not refused.successful and 'runway' in refused.reason
        refused = set_parameter(client, 'region_min_area', 0)
        assert not refused.successful and 'region_min_area' in refused.reason
        assert node.alive()


def test_without_vision_msgs_the_node_says_so_once_and_everything_else_flows(
        client, tiny_checkpoint_path):
    client.record('/perception_node/anomaly_score')
    client.record('/diagnostics', DiagnosticArray)
    client.record('/perception_node/labels', String, LATCHED)
    publisher = client.publisher('/cam/image')
    msg = frame_message(np.zeros((32, 48, 3), dtype=np.uint8), stamp_ns=10**9)
    with NodeProcess(*node_args(tiny_checkpoint_path), vision_msgs=False) as node:
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_score']), \
            node.output
        assert client.spin_until(lambda: diagnostic_values(client) is not None, 10.0)
        assert client.node.count_publishers(TOPIC) == 0
        values = diagnostic_values(client)
        assert node.interrupt() == 0
    assert 'vision_msgs is not importable' in values['anomaly_detections']
    assert node.output.count('~/label_info are not published') == 1, node.output
    # The class metadata still arrives, latched, as JSON.
    labels = json.loads(client.messages('/perception_node/labels')[-1].data)
    assert [c['name'] for c in labels['classes']] == ['road', 'car', 'sky']
    assert labels['unknown']['id'] == 3


def test_a_drivable_class_the_model_lacks_is_one_clear_error(tiny_checkpoint_path):
    with NodeProcess(*node_args(tiny_checkpoint_path, '-p',
                                'drivable_classes:=[road, parking]')) as node:
        assert node.wait(timeout=60.0) == 1
    assert "drivable_classes=['road', 'parking']" in node.output
    assert "'parking'" in node.output and 'Traceback' not in node.output


def test_label_info_is_latched_and_follows_the_threshold(client, tiny_checkpoint_path):
    publisher = client.publisher('/cam/image')
    msg = frame_message(np.zeros((32, 48, 3), dtype=np.uint8), stamp_ns=10**9)
    client.record('/perception_node/anomaly_score')
    with NodeProcess(*node_args(tiny_checkpoint_path, '-p', 'threshold:=0.25')) as node:
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_score']), \
            node.output
        # Subscribed only now, long after the node published: latched, so it still comes.
        client.record('/perception_node/label_info', vision_msgs.LabelInfo, LATCHED)
        client.record('/perception_node/labels', String, LATCHED)
        assert client.spin_until(lambda: client.messages('/perception_node/label_info')
                                 and client.messages('/perception_node/labels'), 20.0)
        first = client.messages('/perception_node/label_info')[-1]
        assert set_parameter(client, 'threshold', 0.75).successful
        assert client.spin_until(
            lambda: len(client.messages('/perception_node/label_info')) > 1, 20.0)
        second = client.messages('/perception_node/label_info')[-1]
        labels = json.loads(client.messages('/perception_node/labels')[-1].data)
    assert [(c.class_id, c.class_name) for c in first.class_map] == [
        (0, 'road'), (1, 'car'), (2, 'sky'), (3, 'unknown')]
    assert first.threshold == pytest.approx(0.25) and second.threshold == pytest.approx(0.75)
    assert labels['classes'][1] == {'id': 1, 'name': 'car', 'color': [0, 0, 142]}
    assert (labels['score'], labels['temperature']) == ('msp', 10.0)
    assert labels['unknown'] == {'id': 3, 'name': 'unknown', 'color': [255, 128, 0]}
