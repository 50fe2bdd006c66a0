"""perception_node in its own process, driven by real rclpy publishers and subscribers."""

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CompressedImage, Image

from dense_ood_ros.image_codec import image_to_array
from dense_ood_ros.pipeline import DenseOODPipeline
from ros_harness import Client, frame_message, NodeProcess, stamp_ns

pytestmark = pytest.mark.slow
OUTPUTS = ('semantic', 'anomaly_score', 'anomaly_mask', 'open_set')


def _rgb(seed, height=48, width=64):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def client():
    client = Client()
    yield client
    client.close()


def _node_args(checkpoint, *extra, camera_topic='/cam/image'):
    return ('-p', f'checkpoint:={checkpoint}', '-p', 'device:=cpu', '-p', 'qos_depth:=1',
            '-p', 'diagnostics_period:=0.5', '-r', f'image:={camera_topic}', *extra)


def _diagnostic_values(client, camera='camera'):
    """Return the key/values of the newest diagnostics status for `camera`."""
    for array in reversed(client.messages('/diagnostics')):
        for status in array.status:
            if status.name.endswith(': ' + camera):
                return {kv.key: kv.value for kv in status.values}
    return None


def _send_and_wait(client, publisher, msg, topic, timeout=30.0):
    count = len(client.messages(topic))
    publisher.publish(msg)
    return client.spin_until(lambda: len(client.messages(topic)) > count, timeout)


def test_outputs_carry_the_input_header_and_equal_the_pipeline(client, tiny_checkpoint_path):
    for output in OUTPUTS + ('semantic_color',):
        client.record(f'/perception_node/{output}')
    publisher = client.publisher('/cam/image')
    rgb = _rgb(1)
    with NodeProcess(*_node_args(tiny_checkpoint_path)) as node:
        msg = frame_message(rgb, stamp_ns=1_234_567_890_123, frame_id='front_cam')
        assert client.handshake(publisher, msg, [f'/perception_node/{o}' for o in
                                                 OUTPUTS + ('semantic_color',)]), node.output
        assert node.alive()

    expected = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu').infer(rgb)
    received = {o: client.messages(f'/perception_node/{o}')[0]
                for o in OUTPUTS + ('semantic_color',)}
    for output, out_msg in received.items():
        assert stamp_ns(out_msg) == 1_234_567_890_123, output
        assert out_msg.header.frame_id == 'front_cam', output
        assert (out_msg.height, out_msg.width) == (48, 64), output
    np.testing.assert_allclose(image_to_array(received['anomaly_score']), expected.score,
                               atol=1e-5)
    np.testing.assert_array_equal(image_to_array(received['semantic']), expected.labels)
    np.testing.assert_array_equal(image_to_array(received['anomaly_mask']),
                                  expected.mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(image_to_array(received['open_set']), expected.open_set)
    color = image_to_array(received['semantic_color'])
    assert color.shape == (48, 64, 3) and received['semantic_color'].encoding == 'rgb8'


def test_burst_into_a_slow_node_serves_the_newest_frames(client, tiny_checkpoint_path):
    # A 512-pixel network input makes the tiny model take ~1 s per frame on this CPU.
    client.record('/perception_node/anomaly_score')
    client.record('/diagnostics', DiagnosticArray)
    publisher = client.publisher('/cam/image')
    frames = [frame_message(_rgb(i), stamp_ns=(i + 1) * 10**9) for i in range(50)]
    with NodeProcess(*_node_args(tiny_checkpoint_path, '-p', 'input_short_edge:=512')) as node:
        warm_up = frame_message(_rgb(99), stamp_ns=1)
        assert client.handshake(publisher, warm_up, ['/perception_node/anomaly_score'],
                                period=3.0), node.output
        assert client.spin_until(lambda: _diagnostic_values(client) is not None, 10.0)
        client.spin_for(3.0)
        before = _diagnostic_values(client)
        client.received['/perception_node/anomaly_score'].clear()
        for msg in frames:
            publisher.publish(msg)
            client.spin_for(0.02)
        last = stamp_ns(frames[-1])
        assert client.spin_until(
            lambda: any(stamp_ns(m) == last
                        for m in client.messages('/perception_node/anomaly_score')),
            timeout=60.0), node.output
        processed = [stamp_ns(m) for m in client.messages('/perception_node/anomaly_score')]
        # Let diagnostics catch up, and show that nothing was still queued.
        client.spin_for(2.0)
        assert [stamp_ns(m) for m in client.messages('/perception_node/anomaly_score')] == \
            processed
        values = _diagnostic_values(client)
    assert processed == sorted(processed)
    assert len(processed) < 25, 'a backlog of stale frames was processed'
    assert values is not None
    received, dropped, done = (int(values[key]) - int(before[key])
                               for key in ('received', 'dropped', 'processed'))
    assert done == len(processed)
    assert dropped > 0 and received == dropped + len(processed)
    # The pipeline's share is reported beside the node's processing time, and is part of it.
    inference, processing = (float(values[f'{key}_ms_p50']) for key in ('inference',
                                                                        'processing'))
    assert 0 < inference <= processing


def test_malformed_frames_are_rejected_and_good_frames_still_served(
        client, tiny_checkpoint_path):
    client.record('/perception_node/semantic')
    client.record('/diagnostics', DiagnosticArray)
    publisher = client.publisher('/cam/image')
    good = frame_message(_rgb(0), stamp_ns=10**9)

    def bad(**changes):
        msg = frame_message(_rgb(0), stamp_ns=10**9)
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    too_big = frame_message(_rgb(0, 100, 120), stamp_ns=10**9)
    bad_frames = [bad(encoding='hsv8'), bad(step=64 * 3 + 1), bad(height=0, width=0, step=0),
                  bad(data=bytes(10)), too_big]
    # A deeper input queue so that no frame is lost before the node sees it.
    args = _node_args(tiny_checkpoint_path, '-p', 'max_input_pixels:=10000',
                      '-p', 'qos_reliability:=reliable', '-p', 'qos_depth:=10')
    with NodeProcess(*args) as node:
        assert client.handshake(publisher, good, ['/perception_node/semantic']), node.output
        client.received['/perception_node/semantic'].clear()
        for index, broken in enumerate(bad_frames):
            publisher.publish(broken)
            assert client.spin_until(
                lambda: (_diagnostic_values(client) or {}).get('rejected') == str(index + 1),
                timeout=10.0), (index, _diagnostic_values(client), node.output)
            good.header.stamp.sec = 100 + index
            assert _send_and_wait(client, publisher, good, '/perception_node/semantic'), \
                f'no output after bad frame {index}: {node.output}'
        assert node.alive()
        # Warnings are throttled: the first one is logged, with the reason.
        assert "unsupported image encoding 'hsv8'" in node.output
    stamps = [m.header.stamp.sec for m in client.messages('/perception_node/semantic')]
    assert stamps == [100 + i for i in range(len(bad_frames))]


def _set_parameter(client, name, value):
    service = client.node.create_client(SetParameters, '/perception_node/set_parameters')
    assert service.wait_for_service(timeout_sec=20.0)
    value_msg = (ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
                 if isinstance(value, int) else
                 ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value))
    future = service.call_async(SetParameters.Request(
        parameters=[ParameterMsg(name=name, value=value_msg)]))
    assert client.spin_until(future.done, timeout=20.0)
    return future.result().results[0]


def test_threshold_changes_at_run_time_and_invalid_values_are_refused(client,
                                                                      tiny_checkpoint_path):
    client.record('/perception_node/anomaly_mask')
    publisher = client.publisher('/cam/image')
    msg = frame_message(_rgb(3), stamp_ns=10**9)
    with NodeProcess(*_node_args(tiny_checkpoint_path, '-p', 'threshold:=0.0')) as node:
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_mask']), node.output
        everything = image_to_array(client.messages('/perception_node/anomaly_mask')[-1])
        assert _set_parameter(client, 'threshold', 5.0).successful
        assert _send_and_wait(client, publisher, msg, '/perception_node/anomaly_mask')
        nothing = image_to_array(client.messages('/perception_node/anomaly_mask')[-1])
        refused = _set_parameter(client, 'overlay_alpha', 1.5)
        assert not refused.successful and 'overlay_alpha' in refused.reason
        refused = _set_parameter(client, 'threshold', float('nan'))
        assert not refused.successful and 'threshold' in refused.reason
        # Statically typed: rclpy itself refuses an integer for a double parameter.
        assert not _set_parameter(client, 'threshold', 1).successful
    assert everything.min() == 255
    assert nothing.max() == 0


def test_two_cameras_get_their_own_outputs_and_headers(client, tiny_checkpoint_path):
    for camera in ('front', 'rear'):
        client.record(f'/perception_node/{camera}/anomaly_score')
    front = client.publisher('/front/image')
    rear = client.publisher('/rear/image')
    args = ('-p', f'checkpoint:={tiny_checkpoint_path}', '-p', 'device:=cpu',
            '-p', 'cameras:=[front, rear]')
    with NodeProcess(*args) as node:
        assert client.handshake(front, frame_message(_rgb(1), stamp_ns=11 * 10**9,
                                                     frame_id='front'),
                                ['/perception_node/front/anomaly_score']), node.output
        assert client.handshake(rear, frame_message(_rgb(2), stamp_ns=22 * 10**9,
                                                    frame_id='rear'),
                                ['/perception_node/rear/anomaly_score']), node.output
    front_out = client.messages('/perception_node/front/anomaly_score')[0]
    rear_out = client.messages('/perception_node/rear/anomaly_score')[0]
    assert (front_out.header.frame_id, stamp_ns(front_out)) == ('front', 11 * 10**9)
    assert (rear_out.header.frame_id, stamp_ns(rear_out)) == ('rear', 22 * 10**9)
    pipeline = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    np.testing.assert_allclose(image_to_array(rear_out), pipeline.infer(_rgb(2)).score,
                               atol=1e-5)


def test_compressed_transport_decodes_and_rejects_corrupt_frames(client,
                                                                 tiny_checkpoint_path):
    client.record('/perception_node/anomaly_score')
    client.record('/diagnostics', DiagnosticArray)
    publisher = client.publisher('/cam/image/compressed', CompressedImage)
    rgb = _rgb(4)
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    good = CompressedImage(format='png', data=png.tobytes())
    good.header.frame_id = 'compressed_cam'
    good.header.stamp.sec = 7
    corrupt = CompressedImage(format='jpeg', data=b'\xff\xd8 definitely not a jpeg')
    with NodeProcess(*_node_args(tiny_checkpoint_path, '-p', 'input_transport:=compressed',
                                 '-p', 'qos_depth:=10', '-p', 'qos_reliability:=reliable',
                                 camera_topic='/cam/image')) as node:
        assert client.handshake(publisher, good, ['/perception_node/anomaly_score']), \
            node.output
        publisher.publish(corrupt)
        assert client.spin_until(
            lambda: (_diagnostic_values(client) or {}).get('rejected') == '1', 10.0), \
            node.output
        assert node.alive() and 'did not decode' in node.output
    out = client.messages('/perception_node/anomaly_score')[0]
    assert out.header.frame_id == 'compressed_cam' and out.header.stamp.sec == 7
    expected = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu').infer(rgb)
    np.testing.assert_allclose(image_to_array(out), expected.score, atol=1e-5)


def test_sigint_exits_cleanly(client, tiny_checkpoint_path):
    client.record('/perception_node/semantic', Image)
    publisher = client.publisher('/cam/image')
    with NodeProcess(*_node_args(tiny_checkpoint_path)) as node:
        # Interrupt a node that is spinning, not one still building its publishers.
        assert client.handshake(publisher, frame_message(_rgb(1), stamp_ns=1),
                                ['/perception_node/semantic']), node.output
        assert node.interrupt() == 0, node.output


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    missing = tmp_path / 'no_such.pt'
    with NodeProcess('-p', f'checkpoint:={missing}') as node:
        code = node.wait(timeout=60.0)
    assert code != 0
    assert 'no_such.pt' in node.output and 'no such file' in node.output
    assert 'Traceback' not in node.output
