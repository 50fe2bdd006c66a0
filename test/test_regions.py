"""Obstacle hypotheses from hand-made score maps: road contact, size, merging, persistence."""

import numpy as np
import pytest

from dense_ood_ros.regions import (AnomalyRegion, box_iou, drivable_ids, find_regions,
                                   mask_of_boxes, RegionPersistence)

ROAD, SIDEWALK, CAR, SKY = 0, 1, 13, 10


def _scene(height=60, width=80):
    """Road in the lower half, sky above; scores zero."""
    labels = np.full((height, width), SKY, dtype=np.uint8)
    labels[height // 2:] = ROAD
    return np.zeros((height, width), dtype=np.float32), labels


def _blob(score, labels, top, left, height, width, value=0.9, label=CAR):
    score[top:top + height, left:left + width] = value
    labels[top:top + height, left:left + width] = label


def test_a_blob_on_the_road_is_one_region_with_its_box_area_and_scores():
    score, labels = _scene()
    _blob(score, labels, 40, 10, 6, 8)
    score[42, 12] = 0.99  # the peak
    regions = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4)
    assert len(regions) == 1
    region = regions[0]
    assert region.box == (10, 40, 8, 6) and region.area == 48
    assert region.peak == pytest.approx(0.99)
    assert region.mean == pytest.approx((47 * 0.9 + 0.99) / 48)
    assert region.score == region.peak
    mean_scored = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4,
                               region_score='mean')
    assert mean_scored[0].score == pytest.approx(region.mean)


def test_a_blob_away_from_the_road_is_dropped_unless_every_region_is_wanted():
    score, labels = _scene()
    _blob(score, labels, 5, 30, 6, 6)  # in the sky, rows 5..10: far from row 30
    assert find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4) == []
    everywhere = find_regions(score, labels, threshold=0.5, drivable=(), min_area=4)
    assert [r.box for r in everywhere] == [(30, 5, 6, 6)]


def test_an_obstacle_labelled_car_counts_when_only_its_rim_meets_the_road():
    score, labels = _scene()
    # Bottom edge at row 29, road from row 30: adjacent, not overlapping.
    _blob(score, labels, 24, 30, 6, 6)
    assert len(find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4)) == 1
    # Three rows of sky between blob and road: beyond a margin of 2, within one of 3.
    score, labels = _scene()
    _blob(score, labels, 21, 30, 6, 6)
    assert find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4,
                        touch_margin=2) == []
    assert len(find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4,
                            touch_margin=4)) == 1


def test_a_min_road_share_keeps_obstacles_on_the_road_and_drops_kerb_outlines():
    score, labels = _scene()
    labels[30:, 60:] = SIDEWALK                # the road ends at column 60
    _blob(score, labels, 40, 10, 6, 6)         # on the road, road all around
    _blob(score, labels, 40, 58, 6, 4)         # along the kerb: half road, half sidewalk
    touching = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4)
    assert sorted(r.box for r in touching) == [(10, 40, 6, 6), (58, 40, 4, 6)]
    on_road = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4,
                           min_road_share=0.7)
    assert [r.box for r in on_road] == [(10, 40, 6, 6)]
    with pytest.raises(ValueError, match='min_road_share'):
        find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4,
                     min_road_share=1.5)


def test_area_below_the_minimum_is_dropped_and_equal_is_kept():
    score, labels = _scene()
    _blob(score, labels, 40, 10, 2, 5)   # 10 px
    _blob(score, labels, 40, 40, 3, 3)   # 9 px
    boxes = [r.box for r in find_regions(score, labels, threshold=0.5, drivable=(ROAD,),
                                         min_area=10)]
    assert boxes == [(10, 40, 5, 2)]


def test_diagonally_touching_blobs_merge_and_separated_ones_do_not():
    score, labels = _scene()
    _blob(score, labels, 40, 10, 4, 4)
    _blob(score, labels, 44, 14, 4, 4)   # touches the first at one corner: 8-connected
    _blob(score, labels, 40, 30, 4, 4)   # a column apart
    regions = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4)
    assert sorted(r.box for r in regions) == [(10, 40, 8, 8), (30, 40, 4, 4)]
    assert [r.area for r in regions] == [32, 16]  # largest first


def test_threshold_is_strict_and_the_mask_holds_exactly_the_kept_regions():
    score, labels = _scene()
    _blob(score, labels, 40, 10, 4, 4, value=0.5)  # equal to the threshold: not anomalous
    _blob(score, labels, 40, 30, 4, 4, value=0.6)
    _blob(score, labels, 5, 50, 4, 4, value=0.9)   # in the sky: not kept
    regions, mask = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4,
                                 with_mask=True)
    assert [r.box for r in regions] == [(30, 40, 4, 4)]
    expected = np.zeros_like(mask)
    expected[40:44, 30:34] = True
    np.testing.assert_array_equal(mask, expected)
    assert np.array_equal(mask_of_boxes(score > 0.5, [r.box for r in regions]), expected)


def test_no_region_and_bad_settings():
    score, labels = _scene()
    assert find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=1) == []
    regions, mask = find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=1,
                                 with_mask=True)
    assert regions == [] and not mask.any()
    with pytest.raises(ValueError, match='min_area'):
        find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=0)
    with pytest.raises(ValueError, match='region score'):
        find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=1,
                     region_score='max')
    with pytest.raises(ValueError, match='one size'):
        find_regions(score, labels[:-1], threshold=0.5, drivable=(ROAD,), min_area=1)
    with pytest.raises(ValueError, match="'roadway'"):
        drivable_ids(['road', 'car'], ['roadway'])
    assert drivable_ids(['sky', 'road', 'parking'], ['parking', 'road']) == (1, 2)


def _region(x, y, w=10, h=10):
    return AnomalyRegion(x=x, y=y, width=w, height=h, area=w * h, peak=1.0, mean=1.0, score=1.0)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0


def test_persistence_reports_a_region_seen_in_n_of_the_last_m_frames():
    track = RegionPersistence(required=2, window=3)
    assert track.update([_region(0, 0)]) == []                     # seen once
    assert track.update([_region(1, 0)]) == [_region(1, 0)]        # twice (IoU 0.82)
    assert track.update([_region(50, 50)]) == []                   # new place: once
    # Frame 4 sees the window of frames 2, 3, 4: (2, 0) overlaps frame 2's box.
    assert track.update([_region(2, 0)]) == [_region(2, 0)]
    assert track.update([]) == []
    assert track.update([]) == []
    assert track.update([_region(2, 0)]) == []                     # history gone
    track.reset()


def test_persistence_one_of_one_reports_everything_and_bad_values_are_refused():
    track = RegionPersistence(1, 1)
    regions = [_region(0, 0), _region(40, 40)]
    assert track.update(regions) == regions
    assert track.update(regions) == regions
    with pytest.raises(ValueError, match='window'):
        RegionPersistence(1, 0)
    with pytest.raises(ValueError, match='persistence'):
        RegionPersistence(3, 2)


def test_a_region_whose_own_pixels_are_road_touches_the_road():
    score, labels = _scene()
    _blob(score, labels, 5, 30, 6, 6, label=SKY)
    labels[7, 32] = ROAD  # one of its pixels, in the sky, is labelled road
    assert len(find_regions(score, labels, threshold=0.5, drivable=(ROAD,), min_area=4)) == 1
