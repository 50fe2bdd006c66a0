"""A camera's health from its counters over the last diagnostics period (no rclpy).

ERROR when the camera has been silent for ``stale_input_s``, or inference failed or gave
non-finite scores in the period; WARN when more than ``max_drop_share`` of the period's
frames were dropped, latency p95 exceeds ``latency_budget_ms`` (0 turns it off), frames were
rejected in the period, or frames arrive but none was processed yet; OK otherwise. Every
condition that holds is named in the message, the worst sets the level.
"""

import dataclasses

OK, WARN, ERROR = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class HealthLimits:
    """The node parameters behind the levels."""

    stale_input_s: float = 5.0
    max_drop_share: float = 0.5
    latency_budget_ms: float = 0.0


def assess(values, *, limits, input_age_s, topic):
    """Return (level, message) for one camera.

    ``values`` is FrameStats.snapshot()'s dict (period counters ``period_*`` included);
    ``input_age_s`` is how long ago the newest frame arrived (since start when none did).
    """
    problems = []
    if input_age_s > limits.stale_input_s:
        problems.append((ERROR, f'no frame on {topic} for {input_age_s:.1f} s'))
    if values['period_failed']:
        problems.append((ERROR, f'inference failed on {values["period_failed"]} frame(s)'))
    if values['period_non_finite']:
        problems.append((ERROR, f'{values["period_non_finite"]} frame(s) gave non-finite '
                                'anomaly scores'))
    received = values['period_received']
    if received and values['period_dropped'] / received > limits.max_drop_share:
        problems.append((WARN, f'dropped {values["period_dropped"]} of {received} frames in the '
                               f'last period (limit {limits.max_drop_share:.0%})'))
    latency = values.get('latency_ms_p95')
    if limits.latency_budget_ms > 0 and latency is not None \
            and latency > limits.latency_budget_ms:
        problems.append((WARN, f'latency p95 {latency:.0f} ms over the budget of '
                               f'{limits.latency_budget_ms:g} ms'))
    if values['period_rejected']:
        problems.append((WARN, f'{values["period_rejected"]} frame(s) rejected'))
    if values['received'] and not values['processed'] and not values['period_failed']:
        problems.append((WARN, 'no frame processed yet'))
    if not problems:
        return OK, 'ok'
    return max(level for level, _ in problems), '; '.join(text for _, text in problems)
