"""~/camera_info: the camera's calibration republished with each output frame's header."""

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo

from ros_harness import Client, frame_message, NodeProcess, stamp_ns
from test_node import diagnostic_values, node_args

pytestmark = pytest.mark.slow


@pytest.fixture
def client():
    client = Client()
    yield client
    client.close()


def _camera_info(frame_id='front_cam'):
    info = CameraInfo(height=48, width=64, distortion_model='plumb_bob')
    info.header.frame_id = frame_id
    info.header.stamp.sec = 3  # the driver's own stamp, not the output frame's
    info.k = [500.0, 0.0, 32.0, 0.0, 500.0, 24.0, 0.0, 0.0, 1.0]
    info.d = [0.1, -0.05, 0.0, 0.0, 0.0]
    info.p = [500.0, 0.0, 32.0, 0.0, 0.0, 500.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def test_camera_info_is_republished_with_the_header_of_each_output_frame(
        client, tiny_checkpoint_path):
    client.record('/perception_node/camera_info', CameraInfo)
    client.record('/perception_node/anomaly_score')
    images = client.publisher('/cam/image')
    infos = client.publisher('/cam/camera_info', CameraInfo)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with NodeProcess(*node_args(tiny_checkpoint_path)) as node:
        assert client.wait_for_subscriber(infos), node.output
        msg = frame_message(rgb, stamp_ns=42_000_000_007, frame_id='front_cam')
        # The CameraInfo goes out before every frame: a single one can be lost while the
        # node's subscription is still matching (the publisher sees it first).
        assert client.handshake(images, msg, ['/perception_node/camera_info',
                                              '/perception_node/anomaly_score'],
                                before=[(infos, _camera_info())]), node.output
    info = client.messages('/perception_node/camera_info')[0]
    score = client.messages('/perception_node/anomaly_score')[0]
    assert info.header == score.header
    assert stamp_ns(info) == 42_000_000_007 and info.header.frame_id == 'front_cam'
    expected = _camera_info()
    assert (info.height, info.width, info.distortion_model) == (48, 64, 'plumb_bob')
    assert list(info.k) == list(expected.k) and list(info.p) == list(expected.p)
    assert list(info.d) == pytest.approx(expected.d)


def test_without_camera_info_outputs_flow_and_diagnostics_say_it_is_missing(
        client, tiny_checkpoint_path):
    client.record('/perception_node/anomaly_score')
    client.record('/perception_node/camera_info', CameraInfo)
    client.record('/diagnostics', DiagnosticArray)
    images = client.publisher('/cam/image')
    msg = frame_message(np.zeros((48, 64, 3), np.uint8), stamp_ns=10**9)
    with NodeProcess(*node_args(tiny_checkpoint_path)) as node:
        assert client.handshake(images, msg, ['/perception_node/anomaly_score']), node.output
        assert client.spin_until(lambda: diagnostic_values(client) is not None, 10.0)
        values = diagnostic_values(client)
    assert values['camera_info'] == 'missing: nothing on /cam/camera_info'
    assert client.messages('/perception_node/camera_info') == []
