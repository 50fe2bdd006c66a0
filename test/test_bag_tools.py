"""dataset_to_bag writes real rosbag2 files that rosbags and mcap read back; stream scoring."""

import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from dense_ood_ros.component_metrics import ComponentAccumulator
from dense_ood_ros.image_codec import image_to_array, image_to_rgb
from dense_ood_ros.metrics import ConfusionMatrix, ood_metrics
from dense_ood_ros.tools import dataset_to_bag, eval_stream, play_bag
from dense_ood_ros.tools.bag_format import (CAMERA_INFO_TOPIC, IMAGE_TOPIC, OOD_TOPIC,
                                            open_bag, read_topics, SEMANTIC_TOPIC, stamp_to_ns)
from dense_ood_ros.tools.frame_panels import anomaly_heatmap, OUTLINE_COLOR, score_range
from dense_ood_ros.tools.stream_scoring import PackedLabel, StreamScorer, Truth
from ros_harness import Client, ros_environment, ROOT, stamp_ns
from test_datasets import _lost_and_found
from dense_ood_ros.datasets.lost_and_found import FishyscapesLF, LostAndFound
from train.data.synthetic import write_lf_layout

FRAMES, HEIGHT, WIDTH = 3, 32, 64
START_NS = 1_700_000_000 * 1_000_000_000


@pytest.fixture(scope='module')
def synthetic_root(tmp_path_factory):
    return write_lf_layout(tmp_path_factory.mktemp('world'), num_images=FRAMES, height=HEIGHT,
                           width=WIDTH)


def _convert(*args):
    return dataset_to_bag.main(['--dataset', *map(str, args)])


def _frames(bag):
    """Return {topic: [(storage ns, header ns, frame_id, message), ...]} of a bag."""
    reader = open_bag(bag)
    try:
        topics = {c.topic for c in reader.connections}
        frames = {topic: [] for topic in topics}
        for topic, timestamp, msg in read_topics(reader, topics):
            frames[topic].append((timestamp, stamp_to_ns(msg.header.stamp),
                                  msg.header.frame_id, msg))
        return frames
    finally:
        reader.close()


def _metadata(bag):
    return yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']


def test_humble_and_jazzy_bags_hold_the_dataset_with_shared_stamps(synthetic_root, tmp_path):
    humble, jazzy = tmp_path / 'humble', tmp_path / 'jazzy'
    assert _convert('synthetic', '--root', synthetic_root, '--out', humble, '--distro',
                    'humble', '--fps', 4) == 0
    assert _convert('synthetic', '--root', synthetic_root, '--out', jazzy, '--distro', 'jazzy',
                    '--storage', 'mcap', '--fps', 4) == 0

    meta_h, meta_j = _metadata(humble), _metadata(jazzy)
    assert (meta_h['version'], meta_h['storage_identifier']) == (8, 'sqlite3')
    assert (meta_j['version'], meta_j['storage_identifier']) == (9, 'mcap')
    # Humble parses QoS as a YAML string of integers; Jazzy reads a list of named enums.
    qos_h = meta_h['topics_with_message_count'][0]['topic_metadata']['offered_qos_profiles']
    qos_j = meta_j['topics_with_message_count'][0]['topic_metadata']['offered_qos_profiles']
    assert yaml.safe_load(qos_h)[0]['reliability'] == 1
    assert qos_j[0]['reliability'] == 'reliable'

    samples = FishyscapesLF(synthetic_root)
    expected_stamps = [START_NS + i * 250_000_000 for i in range(FRAMES)]
    frames_h, frames_j = _frames(humble), _frames(jazzy)
    topics = {IMAGE_TOPIC, CAMERA_INFO_TOPIC, OOD_TOPIC, SEMANTIC_TOPIC}
    assert set(frames_h) == set(frames_j) == topics
    for frames in (frames_h, frames_j):
        for topic, messages in frames.items():
            # Storage time is the header stamp, one stamp per frame on every topic.
            assert [m[0] for m in messages] == expected_stamps, topic
            assert [m[1] for m in messages] == expected_stamps, topic
            assert {m[2] for m in messages} == {'camera'}, topic
        for i, sample in enumerate(samples):
            assert np.array_equal(image_to_rgb(frames[IMAGE_TOPIC][i][3]), sample.image)
            assert np.array_equal(image_to_array(frames[OOD_TOPIC][i][3]), sample.ood)
            assert np.array_equal(image_to_array(frames[SEMANTIC_TOPIC][i][3]),
                                  sample.semantic)
            info = frames[CAMERA_INFO_TOPIC][i][3]
            assert (info.height, info.width) == (HEIGHT, WIDTH)
    for topic in (IMAGE_TOPIC, OOD_TOPIC, SEMANTIC_TOPIC):
        for a, b in zip(frames_h[topic], frames_j[topic]):
            assert a[:3] == b[:3] and bytes(a[3].data) == bytes(b[3].data)

    with open(jazzy / 'jazzy.mcap', 'rb') as stream:
        reader = make_reader(stream)
        messages = list(reader.iter_messages())
    assert len(messages) == 4 * FRAMES
    assert {schema.name for schema, _, _ in messages} == {'sensor_msgs/msg/Image',
                                                          'sensor_msgs/msg/CameraInfo'}
    assert {message.log_time for _, _, message in messages} == set(expected_stamps)


def test_bgr8_bag_decodes_to_the_same_pixels(synthetic_root, tmp_path):
    bag = tmp_path / 'bgr'
    assert _convert('synthetic', '--root', synthetic_root, '--out', bag, '--encoding', 'bgr8',
                    '--limit', 1) == 0
    (image,) = [m[3] for m in _frames(bag)[IMAGE_TOPIC]]
    assert image.encoding == 'bgr8'
    assert np.array_equal(image_to_rgb(image), FishyscapesLF(synthetic_root)[0].image)


def test_unreadable_image_names_the_file_and_leaves_no_bag(tmp_path, capsys):
    root = write_lf_layout(tmp_path / 'world', num_images=3, height=HEIGHT, width=WIDTH)
    broken = root / 'images' / 'synthetic_0002.png'
    broken.write_bytes(b'not a png')
    out = tmp_path / 'bags' / 'broken'
    assert _convert('synthetic', '--root', root, '--out', out) == 2
    assert str(broken) in capsys.readouterr().err
    assert not out.exists()
    assert list((tmp_path / 'bags').iterdir()) == []  # no temporary directory left either


def test_existing_bag_is_kept_unless_forced(synthetic_root, tmp_path, capsys):
    out = tmp_path / 'bag'
    assert _convert('synthetic', '--root', synthetic_root, '--out', out, '--limit', 1) == 0
    assert _convert('synthetic', '--root', synthetic_root, '--out', out) == 2
    assert 'exists' in capsys.readouterr().err
    assert _convert('synthetic', '--root', synthetic_root, '--out', out, '--force') == 0
    assert len(_frames(out)[IMAGE_TOPIC]) == FRAMES
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bag']


def test_lost_and_found_bag_keeps_recording_order_without_semantic_topic(tmp_path):
    root = _lost_and_found(tmp_path / 'laf')
    out = tmp_path / 'laf_bag'
    assert _convert('lostandfound', '--root', root, '--out', out, '--fps', 10) == 0
    frames = _frames(out)
    assert set(frames) == {IMAGE_TOPIC, CAMERA_INFO_TOPIC, OOD_TOPIC}
    samples = LostAndFound(root)
    assert len(frames[IMAGE_TOPIC]) == len(samples) == 4
    # The reader's order is the recording order (numeric frame numbers); the bag follows it.
    pairs = zip(frames[IMAGE_TOPIC], frames[OOD_TOPIC])
    for i, ((stamp, _, _, image), (_, _, _, ood)) in enumerate(pairs):
        assert stamp == START_NS + i * 100_000_000
        assert np.array_equal(image_to_rgb(image), samples[i].image)
        assert np.array_equal(image_to_array(ood), samples[i].ood)


def test_folder_bag_has_camera_topics_only_and_cannot_be_scored(synthetic_root, tmp_path,
                                                                capsys):
    out = tmp_path / 'folder_bag'
    assert _convert('folder', '--root', synthetic_root / 'images', '--out', out) == 0
    frames = _frames(out)
    assert set(frames) == {IMAGE_TOPIC, CAMERA_INFO_TOPIC}
    assert np.array_equal(image_to_rgb(frames[IMAGE_TOPIC][1][3]),
                          FishyscapesLF(synthetic_root)[1].image)
    assert eval_stream.main(['eval_stream', '--bag', str(out)]) == 2
    assert f'has no {OOD_TOPIC}' in capsys.readouterr().err


def test_play_bag_refuses_a_topic_the_bag_lacks(synthetic_root, tmp_path):
    bag = tmp_path / 'bag'
    assert _convert('synthetic', '--root', synthetic_root, '--out', bag, '--limit', 1) == 0
    result = subprocess.run(
        [sys.executable, '-m', 'dense_ood_ros.tools.play_bag', str(bag), '--topics', '/nope'],
        env=ros_environment(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert 'has no topic /nope' in result.stderr


@pytest.mark.slow
def test_play_bag_keeps_the_recorded_timing_scaled_by_rate_and_publishes_clock(
        synthetic_root, tmp_path):
    bag = tmp_path / 'bag'
    # Humble's sqlite3 storage here; the closed-loop test plays mcap.
    # 1 fps: 2 s of bag time, 1 s of wall time at rate 2; a player ignoring --rate takes 2 s.
    assert _convert('synthetic', '--root', synthetic_root, '--out', bag, '--fps', 1,
                    '--distro', 'humble') == 0
    client = Client('timing_client')
    arrivals = []
    try:
        client.record('/clock', Clock)
        client.node.create_subscription(
            Image, IMAGE_TOPIC, lambda msg: arrivals.append((time.monotonic(), stamp_ns(msg))),
            10)
        player = subprocess.Popen(
            [sys.executable, '-m', 'dense_ood_ros.tools.play_bag', str(bag), '--rate', '2',
             '--clock', '--wait-for-subscribers', '1'],
            env=ros_environment(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        assert client.spin_until(lambda: len(arrivals) == FRAMES, 60)
        client.spin_for(0.2)
        output, _ = player.communicate(timeout=30)
    finally:
        client.close()
    assert player.returncode == 0, output
    assert f'{4 * FRAMES}/{4 * FRAMES} messages' in output
    stamps = [START_NS + i * 1_000_000_000 for i in range(FRAMES)]
    assert [stamp for _, stamp in arrivals] == stamps
    # 2 s of bag time at rate 2: never a frame before its time, and not at the bag's own
    # pace either (2 s); the upper bound leaves 0.6 s for a loaded machine's delays.
    span = arrivals[-1][0] - arrivals[0][0]
    assert 1.0 * 0.95 <= span <= 1.6, span
    clock = [stamp_to_ns(msg.clock) for msg in client.messages('/clock')]
    assert clock == sorted(clock) and clock[0] >= START_NS and clock[-1] == stamps[-1]


def _truth(rng, frames, shape=(4, 6)):
    truth, labels = {}, {}
    for stamp in range(frames):
        ood = rng.choice(np.array([0, 1, 255], np.uint8), size=shape)
        semantic = rng.integers(0, 3, size=shape, dtype=np.uint8)
        truth[stamp] = Truth(ood=PackedLabel.pack(ood), semantic=PackedLabel.pack(semantic))
        labels[stamp] = ood, semantic
    return truth, labels


def test_stream_scorer_counts_every_frame_as_matched_or_missing_and_scores_the_matched():
    rng = np.random.default_rng(0)
    truth, labels = _truth(rng, 5)
    scorer = StreamScorer(truth, frames_sent=5, num_classes=3)
    outputs = {s: (rng.random((4, 6), dtype=np.float32),
                   rng.integers(0, 3, size=(4, 6), dtype=np.uint8)) for s in truth}
    for stamp in (0, 2, 3):  # 1 and 4 dropped by the node
        scorer.add_input(stamp, 10.0 + stamp)
        scorer.add_output('semantic', stamp, outputs[stamp][1], 10.5 + stamp)
        assert stamp not in scorer.matched  # the score has not arrived yet
        scorer.add_output('score', stamp, outputs[stamp][0], 10.25 + stamp)
    scorer.add_output('score', 99, outputs[0][0], 20.0)  # not in the bag
    scorer.add_output('score', 0, outputs[0][0], 21.0)  # a looping player's repeat
    scorer.add_output('score', 4, outputs[4][0], 22.0)  # semantic of frame 4 never comes
    assert not scorer.done()

    report = scorer.result()
    assert (report['frames_sent'], report['frames_processed'], report['frames_dropped']) == \
        (5, 3, 2)
    assert (report['frames_unexpected'], report['frames_repeated']) == (1, 1)
    matched = (0, 2, 3)
    expected = ood_metrics(np.stack([outputs[s][0] for s in matched]),
                           np.stack([labels[s][0] for s in matched]))
    for key in ('ap', 'fpr95', 'auroc'):
        assert report[key] == pytest.approx(expected[key], abs=1e-12)
    confusion = ConfusionMatrix(3)
    for stamp in matched:
        confusion.add(outputs[stamp][1], labels[stamp][1])
    assert report['miou'] == pytest.approx(confusion.compute()['miou'], abs=1e-12)
    oods = np.stack([labels[s][0] for s in matched])
    assert report['anomaly_pixel_share'] == pytest.approx(
        np.count_nonzero(oods == 1) / np.count_nonzero(oods != 255))
    # Latency runs from the frame's arrival to its anomaly score's arrival.
    assert report['latency_ms_p50'] == pytest.approx(250.0)
    assert report['latency_frames'] == 3


def test_stream_scorer_refuses_outputs_of_the_wrong_size():
    truth, _ = _truth(np.random.default_rng(1), 1)
    scorer = StreamScorer(truth, frames_sent=1, num_classes=3)
    scorer.add_output('semantic', 0, np.zeros((4, 6), np.uint8), 0.0)
    with pytest.raises(ValueError, match='anomaly score is 3x2 but its ground truth 6x4'):
        scorer.add_output('score', 0, np.zeros((2, 3), np.float32), 0.0)


def test_heat_map_spreads_a_narrow_score_band_and_outlines_the_mask():
    # MSP at T=10 lives just under 1 - 1/K; the run's range must still span the colour map.
    score = np.full((20, 30), 0.90, np.float32)
    score[5:10, 5:10] = 0.94
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 255
    low, high = score_range([score])
    assert low == pytest.approx(0.90) and high == pytest.approx(0.94)
    heat = anomaly_heatmap(score, mask, (low, high))
    cold, hot = heat[15, 20], heat[7, 7]
    assert not np.array_equal(cold, hot)
    # The outline is white on the mask's border and leaves the inside coloured.
    assert tuple(heat[5, 5]) == OUTLINE_COLOR and tuple(hot) != OUTLINE_COLOR


def test_stream_scorer_reports_non_finite_scores_as_an_error_not_as_undefined():
    truth, _ = _truth(np.random.default_rng(2), 2)
    scorer = StreamScorer(truth, frames_sent=2, num_classes=3)
    for stamp in truth:
        score = np.full((4, 6), 0.5, np.float32)
        score[0, 0] = np.nan  # a node whose scores went NaN
        scorer.add_output('semantic', stamp, np.zeros((4, 6), np.uint8), 0.0)
        scorer.add_output('score', stamp, score, 0.0)
    with pytest.raises(ValueError, match='finite'):
        scorer.result()


def test_stream_scorer_notes_undefined_metrics_of_a_stream_without_outliers():
    ood = np.zeros((4, 6), np.uint8)
    truth = {0: Truth(ood=PackedLabel.pack(ood))}
    scorer = StreamScorer(truth, frames_sent=1, num_classes=3)
    scorer.add_output('score', 0, np.zeros((4, 6), np.float32), 0.0)
    report = scorer.result()
    assert report['ap'] is None and report['frames_processed'] == 1
    assert any('undefined' in note for note in report['notes'])


@pytest.mark.parametrize('processed,allowed,failure', [
    (10, 0.0, None), (9, 0.0, '1 of 10 frames were never scored'), (9, 0.1, None),
    (0, 1.0, 'no frame of 10 was scored')])
def test_eval_stream_fails_unless_enough_frames_were_scored(processed, allowed, failure):
    report = {'frames_sent': 10, 'frames_processed': processed,
              'frames_dropped': 10 - processed}
    got = eval_stream.verdict(report, allowed)
    if failure is None:
        assert got is None
    else:
        assert failure in got


def test_play_bag_reports_what_it_sent_per_topic():
    output = ('play_bag: 3/3 messages, bag time 1.00 s\n'
              'play_bag: done, 5 messages (/camera/camera_info: 2, /camera/image_raw: 3)\n')
    assert play_bag.sent_per_topic(output) == {'/camera/camera_info': 2,
                                               '/camera/image_raw': 3}
    with pytest.raises(ValueError, match='did not finish'):
        play_bag.sent_per_topic('play_bag: interrupted\n')


def test_stream_scorer_scores_the_nodes_reported_regions_at_component_level():
    ood = np.zeros((20, 30), np.uint8)
    ood[2:6, 2:6] = 1                  # an obstacle the node reports
    ood[12:16, 20:24] = 1              # one it misses
    ood[18:, :] = 255
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 2:6] = 255               # reported
    mask[10:12, 10:12] = 255           # in the mask but not reported (persistence): ignored
    truth = {7: Truth(ood=PackedLabel.pack(ood))}
    scorer = StreamScorer(truth, frames_sent=1, num_classes=3, components=True)
    scorer.add_output('score', 7, mask.astype(np.float32), 0.0)
    scorer.add_output('mask', 7, mask, 0.0)
    assert not scorer.matched  # the detections have not arrived yet
    scorer.add_output('detections', 7, [(2, 2, 4, 4)], 0.0)
    report = scorer.result()
    expected = ComponentAccumulator()
    reported = np.zeros((20, 30), bool)
    reported[2:6, 2:6] = True
    expected.add(reported, ood)
    for key, value in expected.compute().items():
        if key in report:
            assert report[key] == value, key
    assert (report['truth_components'], report['predicted_components']) == (2, 1)
    assert report['siou'] == 0.5 and report['ppv'] == 1.0
    # Without components the report says they were not measured.
    plain = StreamScorer(truth, frames_sent=1, num_classes=3)
    plain.add_output('score', 7, mask.astype(np.float32), 0.0)
    report = plain.result()
    assert report['f1_mean'] is None
    assert any('component metrics not measured' in note for note in report['notes'])
