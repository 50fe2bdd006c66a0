"""perception_node in its own process, driven by real rclpy publishers and subscribers."""

import pathlib

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from conftest import TINY_PALETTE
from dense_ood_ros.image_codec import image_to_array
from dense_ood_ros.labels import UNKNOWN_COLOR
from dense_ood_ros.pipeline import DenseOODPipeline
from ros_harness import Client, frame_message, NodeProcess, ROOT, stamp_ns

pytestmark = pytest.mark.slow
ROOT_DIR = pathlib.Path(ROOT)
OUTPUTS = ('semantic', 'anomaly_score', 'anomaly_mask', 'open_set')


def _rgb(seed, height=48, width=64):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def client():
    client = Client()
    yield client
    client.close()


def node_args(checkpoint, *extra, camera_topic='/cam/image'):
    """Return the node's ROS arguments: CPU, fast diagnostics, camera on `camera_topic`."""
    return ('-p', f'checkpoint:={checkpoint}', '-p', 'device:=cpu',
            '-p', 'diagnostics_period:=0.5', '-r', f'image:={camera_topic}', *extra)


def reliable_input(topic, depth=10):
    """Return the standard QoS overrides for a reliable camera subscription on `topic`."""
    return ('-p', f'qos_overrides.{topic}.subscription.reliability:=reliable',
            '-p', f'qos_overrides.{topic}.subscription.depth:={depth}')


def diagnostic_values(client, camera='camera'):
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


def _palette_colouring(open_set, palette):
    """Return the rgb8 colours of open-set ids: the palette, unknown in UNKNOWN_COLOR."""
    colours = np.array([*palette, UNKNOWN_COLOR], dtype=np.uint8)
    return colours[open_set]


def test_outputs_carry_the_input_header_and_equal_the_pipeline(client, tiny_checkpoint_path):
    topics = OUTPUTS + ('semantic_color', 'overlay')
    for output in topics:
        client.record(f'/perception_node/{output}')
    publisher = client.publisher('/cam/image')
    rgb = _rgb(1)
    pipeline = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    # A threshold that splits the frame, so that known and unknown colours both show.
    threshold = float(np.median(pipeline.infer(rgb).score))
    pipeline.threshold = threshold
    with NodeProcess(*node_args(tiny_checkpoint_path, '-p', f'threshold:={threshold!r}',
                                '-p', 'overlay_alpha:=0.25')) as node:
        msg = frame_message(rgb, stamp_ns=1_234_567_890_123, frame_id='front_cam')
        assert client.handshake(publisher, msg, [f'/perception_node/{o}' for o in topics]), \
            node.output
        assert node.alive()

    expected = pipeline.infer(rgb)
    received = {o: client.messages(f'/perception_node/{o}')[0] for o in topics}
    for output, out_msg in received.items():
        assert stamp_ns(out_msg) == 1_234_567_890_123, output
        assert out_msg.header.frame_id == 'front_cam', output
        assert (out_msg.height, out_msg.width) == (48, 64), output
    np.testing.assert_allclose(image_to_array(received['anomaly_score']), expected.score,
                               atol=1e-5)
    np.testing.assert_array_equal(image_to_array(received['semantic']), expected.labels)
    np.testing.assert_array_equal(image_to_array(received['anomaly_mask']),
                                  expected.mask.astype(np.uint8) * 255)
    open_set = image_to_array(received['open_set'])
    np.testing.assert_array_equal(open_set, expected.open_set)
    assert 0 < np.count_nonzero(open_set == 3) < open_set.size
    # The colours are the palette colouring of ~/open_set, unknown in its own colour.
    color = image_to_array(received['semantic_color'])
    assert received['semantic_color'].encoding == 'rgb8'
    np.testing.assert_array_equal(color, _palette_colouring(open_set, TINY_PALETTE))
    # The overlay blends the camera with those colours at overlay_alpha (rounded to uint8).
    assert received['overlay'].encoding == 'rgb8'
    blend = 0.75 * rgb.astype(np.float64) + 0.25 * color.astype(np.float64)
    overlay_image = image_to_array(received['overlay']).astype(np.float64)
    assert np.abs(overlay_image - blend).max() <= 1.0


def test_burst_into_a_slow_node_serves_the_newest_frames(client, tiny_checkpoint_path):
    # A 512-pixel network input makes the tiny model take ~1 s per frame on this CPU.
    client.record('/perception_node/anomaly_score')
    client.record('/diagnostics', DiagnosticArray)
    publisher = client.publisher('/cam/image')
    frames = [frame_message(_rgb(i), stamp_ns=(i + 1) * 10**9) for i in range(50)]
    with NodeProcess(*node_args(tiny_checkpoint_path, '-p', 'input_short_edge:=512')) as node:
        warm_up = frame_message(_rgb(99), stamp_ns=1)
        assert client.handshake(publisher, warm_up, ['/perception_node/anomaly_score'],
                                period=3.0), node.output
        assert client.spin_until(lambda: diagnostic_values(client) is not None, 10.0)

        def idle():
            # Every warm-up frame received so far is processed or dropped: none pending.
            values = diagnostic_values(client)
            return int(values['processed']) + int(values['dropped']) == \
                int(values['received'])

        assert client.spin_until(idle, 30.0), diagnostic_values(client)
        client.spin_for(1.0)
        before = diagnostic_values(client)
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
        values = diagnostic_values(client)
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
    # Health: a period in which most frames were dropped is a warning that says so.
    statuses = [s for a in client.messages('/diagnostics') for s in a.status]
    assert any(s.level == DiagnosticStatus.WARN and 'frames in the last period' in s.message
               for s in statuses), [s.message for s in statuses]


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
    args = node_args(tiny_checkpoint_path, '-p', 'max_input_pixels:=10000',
                     *reliable_input('/cam/image'))
    with NodeProcess(*args) as node:
        assert client.handshake(publisher, good, ['/perception_node/semantic']), node.output
        client.received['/perception_node/semantic'].clear()
        for index, broken in enumerate(bad_frames):
            publisher.publish(broken)
            assert client.spin_until(
                lambda: (diagnostic_values(client) or {}).get('rejected') == str(index + 1),
                timeout=10.0), (index, diagnostic_values(client), node.output)
            good.header.stamp.sec = 100 + index
            assert _send_and_wait(client, publisher, good, '/perception_node/semantic'), \
                f'no output after bad frame {index}: {node.output}'
        assert node.alive()
        # Warnings are throttled: the first one is logged, with the reason.
        assert "unsupported image encoding 'hsv8'" in node.output
    stamps = [m.header.stamp.sec for m in client.messages('/perception_node/semantic')]
    assert stamps == [100 + i for i in range(len(bad_frames))]


def set_parameter(client, name, value):
    """Set one parameter of /perception_node through its service; return the result."""
    service = client.node.create_client(SetParameters, '/perception_node/set_parameters')
    assert service.wait_for_service(timeout_sec=20.0)
    if isinstance(value, list):
        value_msg = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                                   string_array_value=value)
    elif isinstance(value, str):
        value_msg = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    elif isinstance(value, int):
        value_msg = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    else:
        value_msg = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    future = service.call_async(SetParameters.Request(
        parameters=[ParameterMsg(name=name, value=value_msg)]))
    assert client.spin_until(future.done, timeout=20.0)
    return future.result().results[0]


def test_threshold_changes_at_run_time_and_invalid_values_are_refused(client,
                                                                      tiny_checkpoint_path):
    client.record('/perception_node/anomaly_mask')
    publisher = client.publisher('/cam/image')
    msg = frame_message(_rgb(3), stamp_ns=10**9)
    with NodeProcess(*node_args(tiny_checkpoint_path, '-p', 'threshold:=0.0')) as node:
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_mask']), node.output
        everything = image_to_array(client.messages('/perception_node/anomaly_mask')[-1])
        assert set_parameter(client, 'threshold', 5.0).successful
        assert _send_and_wait(client, publisher, msg, '/perception_node/anomaly_mask')
        nothing = image_to_array(client.messages('/perception_node/anomaly_mask')[-1])
        refused = set_parameter(client, 'overlay_alpha', 1.5)
        assert not refused.successful and 'overlay_alpha' in refused.reason
        refused = set_parameter(client, 'threshold', float('nan'))
        assert not refused.successful and 'threshold' in refused.reason
        # An integer for a double is that double; a string is refused, naming the parameter.
        assert set_parameter(client, 'threshold', 5).successful
        refused = set_parameter(client, 'threshold', 'high')
        assert not refused.successful and 'threshold' in refused.reason
        assert set_parameter(client, 'threshold', 5.0).successful
    assert everything.min() == 255
    assert nothing.max() == 0


def test_score_and_temperature_change_at_run_time_and_unset_values_mean_the_checkpoints(
        client, tiny_checkpoint_path):
    topic = '/perception_node/anomaly_score'
    client.record(topic)
    publisher = client.publisher('/cam/image')
    rgb = _rgb(5)
    msg = frame_message(rgb, stamp_ns=10**9)
    checkpoint = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    entropy = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu',
                                               score='entropy', temperature=3.0)
    msp_t1 = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu',
                                              score='msp', temperature=1.0)
    assert checkpoint.score == 'msp' and checkpoint.temperature != 1.0

    def latest():
        assert _send_and_wait(client, publisher, msg, topic)
        return image_to_array(client.messages(topic)[-1])

    # '' / 0.0 / -1.0 given explicitly at start: the checkpoint's score, temperature and
    # threshold.
    unset = ('-p', "score:=''", '-p', 'temperature:=0.0', '-p', 'threshold:=-1.0')
    with NodeProcess(*node_args(tiny_checkpoint_path, *unset)) as node:
        assert client.handshake(publisher, msg, [topic]), node.output
        np.testing.assert_allclose(latest(), checkpoint.infer(rgb).score, atol=1e-5)
        assert set_parameter(client, 'score', 'entropy').successful
        assert set_parameter(client, 'temperature', 3.0).successful
        np.testing.assert_allclose(latest(), entropy.infer(rgb).score, atol=1e-5)
        assert set_parameter(client, 'score', 'msp').successful
        assert set_parameter(client, 'temperature', 1.0).successful
        np.testing.assert_allclose(latest(), msp_t1.infer(rgb).score, atol=1e-5)
        # Unset again at run time: back to the checkpoint's values.
        assert set_parameter(client, 'score', '').successful
        assert set_parameter(client, 'temperature', 0.0).successful
        np.testing.assert_allclose(latest(), checkpoint.infer(rgb).score, atol=1e-5)
        refused = set_parameter(client, 'score', 'energy')
        assert not refused.successful and 'score' in refused.reason
        np.testing.assert_allclose(latest(), checkpoint.infer(rgb).score, atol=1e-5)


def test_two_cameras_share_one_forward_pass_and_get_their_own_outputs(
        client, tiny_checkpoint_path):
    cameras = ('front', 'rear')
    for camera in cameras:
        client.record(f'/perception_node/{camera}/anomaly_score')
    client.record('/diagnostics', DiagnosticArray)
    publishers = {camera: client.publisher(f'/{camera}/image') for camera in cameras}
    # A 512-pixel network input: the tiny model takes about a second per frame here, so
    # frames sent while it works wait for the same next pass.
    args = ('-p', f'checkpoint:={tiny_checkpoint_path}', '-p', 'device:=cpu',
            '-p', 'cameras:=[front, rear]', '-p', 'input_short_edge:=512',
            '-p', 'diagnostics_period:=0.5')
    frames = {'front': _rgb(1), 'rear': _rgb(2)}
    stamps = {'front': 11 * 10**9, 'rear': 22 * 10**9}
    with NodeProcess(*args) as node:
        for camera in cameras:  # discovery both ways, one camera at a time
            assert client.handshake(publishers[camera],
                                    frame_message(_rgb(9), stamp_ns=1, frame_id=camera),
                                    [f'/perception_node/{camera}/anomaly_score'],
                                    period=3.0), node.output
        assert client.spin_until(lambda: diagnostic_values(client, 'rear') is not None, 10.0)
        # Keep the worker busy, then give both cameras a frame while it works.
        publishers['front'].publish(frame_message(_rgb(8), stamp_ns=5, frame_id='front'))
        client.spin_for(0.3)
        for camera in cameras:
            publishers[camera].publish(frame_message(frames[camera], stamp_ns=stamps[camera],
                                                     frame_id=camera))

        def arrived(camera):
            return any(stamp_ns(m) == stamps[camera]
                       for m in client.messages(f'/perception_node/{camera}/anomaly_score'))

        assert client.spin_until(lambda: all(arrived(c) for c in cameras), 60.0), node.output
        client.spin_for(1.5)  # one more diagnostics period
        batched = {c: int(diagnostic_values(client, c)['batched']) for c in cameras}
    # Diagnostics: exactly the two frames sent together shared one forward pass.
    assert batched == {'front': 1, 'rear': 1}, batched
    pipeline = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu',
                                                input_short_edge=512)
    for camera in cameras:
        (out,) = [m for m in client.messages(f'/perception_node/{camera}/anomaly_score')
                  if stamp_ns(m) == stamps[camera]]
        assert out.header.frame_id == camera
        np.testing.assert_allclose(image_to_array(out), pipeline.infer(frames[camera]).score,
                                   atol=1e-5, err_msg=camera)


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
    with NodeProcess(*node_args(tiny_checkpoint_path, '-p', 'input_transport:=compressed',
                                *reliable_input('/cam/image/compressed'),
                                camera_topic='/cam/image')) as node:
        assert client.handshake(publisher, good, ['/perception_node/anomaly_score']), \
            node.output
        publisher.publish(corrupt)
        assert client.spin_until(
            lambda: (diagnostic_values(client) or {}).get('rejected') == '1', 10.0), \
            node.output
        assert node.alive() and 'did not decode' in node.output
    out = client.messages('/perception_node/anomaly_score')[0]
    assert out.header.frame_id == 'compressed_cam' and out.header.stamp.sec == 7
    expected = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu').infer(rgb)
    np.testing.assert_allclose(image_to_array(out), expected.score, atol=1e-5)


def test_sigint_exits_cleanly(client, tiny_checkpoint_path):
    client.record('/perception_node/semantic', Image)
    publisher = client.publisher('/cam/image')
    with NodeProcess(*node_args(tiny_checkpoint_path)) as node:
        # Interrupt a node that is spinning, not one still building its publishers.
        assert client.handshake(publisher, frame_message(_rgb(1), stamp_ns=1),
                                ['/perception_node/semantic']), node.output
        assert node.interrupt() == 0, node.output


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    missing = tmp_path / 'no_such.pt'
    with NodeProcess('-p', f'checkpoint:={missing}') as node:
        code = node.wait(timeout=60.0)
    # The README promises exit code 1 for a missing or invalid checkpoint.
    assert code == 1, node.output
    assert 'no_such.pt' in node.output and 'no such file' in node.output
    assert 'Traceback' not in node.output


def test_compatible_parameter_types_are_taken_and_wrong_ones_are_one_clear_error(
        client, tiny_checkpoint_path, tmp_path):
    # The shipped parameter file, then integers where doubles are declared: the node serves.
    client.record('/perception_node/anomaly_mask')
    publisher = client.publisher('/cam/image')
    params_file = ROOT_DIR / 'config' / 'perception.yaml'
    with NodeProcess('--params-file', str(params_file),
                     *node_args(tiny_checkpoint_path, '-p', 'threshold:=1',
                                '-p', 'overlay_alpha:=1', '-p', 'temperature:=2')) as node:
        msg = frame_message(_rgb(4), stamp_ns=10**9)
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_mask']), node.output
        # MSP lies below 1: a threshold of 1 marks nothing.
        assert image_to_array(client.messages('/perception_node/anomaly_mask')[-1]).max() == 0
    for wrong, name in (('region_min_area:=big', 'region_min_area'),
                        ('threshold:=true', 'threshold'), ('upsample:=3', 'upsample')):
        with NodeProcess(*node_args(tiny_checkpoint_path, '-p', wrong)) as node:
            assert node.wait(timeout=60.0) == 1, node.output
        assert f'parameter {name}=' in node.output and 'Traceback' not in node.output, \
            node.output
    # The same from a params file.
    wrong_file = tmp_path / 'wrong.yaml'
    wrong_file.write_text('/**:\n  ros__parameters:\n    overlay_alpha: half\n')
    with NodeProcess('--params-file', str(wrong_file),
                     *node_args(tiny_checkpoint_path)) as node:
        assert node.wait(timeout=60.0) == 1, node.output
    assert "parameter overlay_alpha='half'" in node.output and 'Traceback' not in node.output


def _newest_status(client, camera='camera'):
    for array in reversed(client.messages('/diagnostics')):
        for status in array.status:
            if status.name.endswith(': ' + camera):
                return status
    return None


def _wait_for_level(client, level, timeout=15.0):
    """Spin until the newest status has `level`; return that status (or the last seen)."""
    client.spin_until(lambda: (_newest_status(client) or DiagnosticStatus()).level == level,
                      timeout)
    return _newest_status(client)


def test_health_goes_error_when_the_camera_is_silent_and_ok_when_frames_flow(
        client, tiny_checkpoint_path):
    client.record('/diagnostics', DiagnosticArray)
    client.record('/perception_node/anomaly_score')
    publisher = client.publisher('/cam/image')
    args = node_args(tiny_checkpoint_path, '-p', 'stale_input_s:=3.0',
                     '-p', 'latency_budget_ms:=0.001')
    with NodeProcess(*args) as node:
        status = _wait_for_level(client, DiagnosticStatus.ERROR, timeout=60.0)
        assert status.level == DiagnosticStatus.ERROR, node.output
        assert status.message.startswith('no frame on /cam/image for ')
        # Frames flow: no longer stale, but 0.001 ms is a latency budget no frame meets.
        msg = frame_message(_rgb(6), stamp_ns=10**9)
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_score']), \
            node.output
        for _ in range(3):
            publisher.publish(msg)
            client.spin_for(0.3)
        status = _wait_for_level(client, DiagnosticStatus.WARN)
        assert status.level == DiagnosticStatus.WARN and 'over the budget' in status.message
        assert set_parameter(client, 'latency_budget_ms', 0.0).successful
        publisher.publish(msg)
        status = _wait_for_level(client, DiagnosticStatus.OK)
        assert (status.level, status.message) == (DiagnosticStatus.OK, 'ok')


def test_non_finite_scores_are_an_error(client, tmp_path):
    from conftest import make_tiny_checkpoint
    from dense_ood_ros.checkpoint import save_checkpoint

    broken = make_tiny_checkpoint()
    bias = next(name for name in broken.state_dict if name.endswith('bias'))
    broken.state_dict[bias] = broken.state_dict[bias].clone().fill_(float('nan'))
    path = tmp_path / 'nan.pt'
    save_checkpoint(path, broken)
    client.record('/diagnostics', DiagnosticArray)
    client.record('/perception_node/anomaly_score')
    publisher = client.publisher('/cam/image')
    with NodeProcess(*node_args(path)) as node:
        msg = frame_message(_rgb(7), stamp_ns=10**9)
        assert client.handshake(publisher, msg, ['/perception_node/anomaly_score']), \
            node.output
        status = _wait_for_level(client, DiagnosticStatus.ERROR)
        assert node.alive()
    assert status.level == DiagnosticStatus.ERROR and 'non-finite' in status.message


def test_qos_follows_rep_2003_and_the_standard_overrides_change_it(client,
                                                                   tiny_checkpoint_path):
    client.record('/perception_node/anomaly_score')

    def endpoints():
        return (client.node.get_subscriptions_info_by_topic('/cam/image'),
                client.node.get_publishers_info_by_topic('/perception_node/anomaly_score'))

    with NodeProcess(*node_args(tiny_checkpoint_path)) as node:
        assert client.spin_until(lambda: all(endpoints()), 60.0), node.output
        (subscription,), (publisher,) = endpoints()
    assert subscription.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    overrides = (*reliable_input('/cam/image', depth=7),
                 '-p', 'qos_overrides./perception_node/anomaly_score.publisher.reliability:='
                       'best_effort')
    with NodeProcess(*node_args(tiny_checkpoint_path, *overrides)) as node:
        assert client.spin_until(
            lambda: all(endpoints()) and endpoints()[0][0].qos_profile.reliability
            == ReliabilityPolicy.RELIABLE, 60.0), node.output
        (subscription,), (publisher,) = endpoints()
    # (The history depth is not announced in discovery; reliability is.)
    assert publisher.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
