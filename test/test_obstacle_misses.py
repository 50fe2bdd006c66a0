"""train.obstacle_misses: obstacles scored below their road's median, by style and kind."""

import json

import numpy as np
import pytest

from train.data.synthetic import render_scene, SyntheticStreetWorld
from train.obstacle_misses import count_misses, instance_rows, main, summarize


@pytest.fixture(scope='module')
def scene():
    # A test scene with at least two obstacles, so one can be hidden and another not.
    for seed in range(100):
        candidate = render_scene(seed, height=128, width=256, anomalies=True)
        if len(candidate.anomalies) >= 2:
            return candidate
    raise AssertionError('no scene with two obstacles in 100 seeds')


def _score(scene, obstacle_levels, road=0.5, elsewhere=0.9):
    score = np.full(scene.ood.shape, elsewhere, np.float32)
    score[scene.ood == 0] = road
    for k, level in enumerate(obstacle_levels, 1):
        score[scene.anomaly_ids == k] = level
    return score


def test_an_obstacle_scored_below_the_road_median_is_counted_and_one_above_is_not(scene):
    levels = [0.2] + [0.8] * (len(scene.anomalies) - 1)
    rows = instance_rows(_score(scene, levels), scene)
    assert [row['kind'] for row in rows] == scene.anomalies
    assert [row['style'] for row in rows] == scene.anomaly_styles
    assert [row['below_road_median'] for row in rows] == [level < 0.5 for level in levels]
    assert rows[0]['mean_score'] == pytest.approx(0.2) and rows[0]['road_median'] == 0.5
    assert [row['pixels'] for row in rows] == [
        int((scene.anomaly_ids == k).sum()) for k in range(1, len(rows) + 1)]


def test_the_median_is_the_roads_not_the_frames(scene):
    # Off-road pixels score high everywhere; they must not lift the reference above 0.6.
    rows = instance_rows(_score(scene, [0.6] * len(scene.anomalies), road=0.5,
                                elsewhere=1.0), scene)
    assert not any(row['below_road_median'] for row in rows)


def test_a_score_map_of_another_size_is_refused_by_its_shape(scene):
    with pytest.raises(ValueError, match='64x64 but the scene is 128x256'):
        instance_rows(np.zeros((64, 64), np.float32), scene)


def test_summary_counts_by_style_and_by_kind():
    rows = [{'kind': 'tyre', 'style': 'grey', 'below_road_median': True},
            {'kind': 'tyre', 'style': 'vivid', 'below_road_median': False},
            {'kind': 'cargo', 'style': 'grey', 'below_road_median': False},
            {'kind': 'cargo', 'style': 'grey', 'below_road_median': None}]
    assert summarize(rows) == {
        'style': {'grey': {'instances': 2, 'below': 1}, 'vivid': {'instances': 1, 'below': 0}},
        'kind': {'cargo': {'instances': 1, 'below': 0}, 'tyre': {'instances': 2, 'below': 1}}}


def test_command_scores_every_obstacle_of_the_world_with_a_real_model(tiny_checkpoint_path,
                                                                      tmp_path, capsys):
    out = tmp_path / 'misses.json'
    assert main(['--checkpoint', str(tiny_checkpoint_path), '--num-images', '3', '--height',
                 '64', '--width', '128', '--seed', '2', '--device', 'cpu',
                 '--json', str(out)]) == 0
    world = SyntheticStreetWorld('test', num_images=3, height=64, width=128, seed=2)
    scenes = [world.scene(i) for i in range(3)]
    report = json.loads(out.read_text())
    assert [(row['image'], row['kind'], row['style']) for row in report['instances']] == [
        (i, kind, style) for i, s in enumerate(scenes)
        for kind, style in zip(s.anomalies, s.anomaly_styles)]
    assert all(0 <= row['mean_score'] <= 1 for row in report['instances'])
    assert sum(c['instances'] for c in report['summary']['style'].values()) == \
        len(report['instances'])
    assert report['world']['seed'] == 2 and report['score'] == 'msp'
    assert 'below road median' in capsys.readouterr().out


def test_count_misses_uses_the_requested_score(tiny_checkpoint_path):
    from dense_ood_ros.pipeline import DenseOODPipeline

    pipeline = DenseOODPipeline.from_checkpoint(tiny_checkpoint_path, device='cpu')
    world = SyntheticStreetWorld('test', num_images=1, height=64, width=128, seed=2)
    msp = count_misses(pipeline, world, score='msp', temperature=1.0)
    entropy = count_misses(pipeline, world, score='entropy', temperature=1.0)
    assert [row['kind'] for row in msp] == [row['kind'] for row in entropy]
    assert [row['mean_score'] for row in msp] != [row['mean_score'] for row in entropy]


@pytest.mark.parametrize('args, message', [
    (['--checkpoint', 'missing.pt'], 'missing.pt'),
    (['--temperature', '0'], 'temperature must be positive'),
    (['--num-images', '0'], 'num-images must be at least 1'),
    (['--height', '16'], 'at least 32x32, got 16x512'),
])
def test_bad_input_is_named_and_exits_2(args, message, tiny_checkpoint_path, capsys):
    argv = ['--checkpoint', str(tiny_checkpoint_path)] + args
    assert main(argv) == 2
    assert message in capsys.readouterr().err
