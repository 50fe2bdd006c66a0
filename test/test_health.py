"""Health levels from a camera's counters: each condition and its message."""

from dense_ood_ros.health import assess, ERROR, HealthLimits, OK, WARN

LIMITS = HealthLimits(stale_input_s=5.0, max_drop_share=0.5, latency_budget_ms=100.0)


def _values(**changes):
    values = {'received': 10, 'processed': 10, 'period_received': 4, 'period_dropped': 0,
              'period_rejected': 0, 'period_failed': 0, 'period_non_finite': 0,
              'latency_ms_p95': 50.0}
    values.update(changes)
    return values


def _assess(values, age=0.1):
    return assess(values, limits=LIMITS, input_age_s=age, topic='/cam/image')


def test_a_healthy_camera_is_ok():
    assert _assess(_values()) == (OK, 'ok')


def test_errors_stale_input_failed_inference_non_finite_scores():
    assert _assess(_values(), age=6.0) == (ERROR, 'no frame on /cam/image for 6.0 s')
    assert _assess(_values(period_failed=2)) == (ERROR, 'inference failed on 2 frame(s)')
    level, message = _assess(_values(period_non_finite=1))
    assert level == ERROR and 'non-finite' in message


def test_warnings_drops_latency_rejections_and_nothing_processed():
    level, message = _assess(_values(period_received=4, period_dropped=3))
    assert level == WARN and message == 'dropped 3 of 4 frames in the last period (limit 50%)'
    assert _assess(_values(period_received=4, period_dropped=2))[0] == OK  # at the limit
    assert _assess(_values(latency_ms_p95=150.0)) == (
        WARN, 'latency p95 150 ms over the budget of 100 ms')
    off = HealthLimits(latency_budget_ms=0.0)
    assert assess(_values(latency_ms_p95=1e6), limits=off, input_age_s=0.0,
                  topic='/cam/image')[0] == OK
    assert _assess(_values(period_rejected=1)) == (WARN, '1 frame(s) rejected')
    assert _assess(_values(processed=0)) == (WARN, 'no frame processed yet')


def test_every_condition_is_named_and_the_worst_sets_the_level():
    level, message = _assess(_values(period_rejected=1, period_failed=1), age=9.0)
    assert level == ERROR
    assert message.split('; ') == ['no frame on /cam/image for 9.0 s',
                                   'inference failed on 1 frame(s)', '1 frame(s) rejected']
