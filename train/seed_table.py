"""Statistics over seeds: Table 3's rows as mean +- std, and paired comparisons of arms.

The method issue's target (item 7) is read from these: an arm beats a rival when its mean
improvement over the rival, paired by seed, exceeds one sample std of those differences.
Used by ``benchmarks/reproduce_table3.py`` (runs it trains) and ``train.compare_runs`` (runs
trained elsewhere).

``results`` maps arm -> seed -> a dict whose ``rows`` follow ``SETTINGS``, each row holding
the ``METRICS`` as fractions.
"""

import math
import statistics

# Table 3's rows per model, in the paper's order.
SETTINGS = [('msp', 1.0), ('entropy', 1.0), ('msp', 10.0), ('entropy', 2.0)]
METRICS = ('miou', 'ap', 'fpr95', 'auroc')
# The settings item 7 of the method issue judges by, and its mIoU allowance.
TARGET_SETTINGS = (('msp', 10.0), ('entropy', 2.0))
MIOU_ALLOWANCE = 0.015


def summarise(results, variants, seeds, names=None):
    """Return table rows: per variant and setting, mean and sample std of each metric.

    `names` maps a variant to the model name the table prints (default: the variant).
    """
    names = names or {}
    rows = []
    for variant in variants:
        for index, (score, temperature) in enumerate(SETTINGS):
            row = {'model': names.get(variant, variant), 'variant': variant, 'score': score,
                   'temperature': temperature}
            for metric in METRICS:
                values = [results[variant][seed]['rows'][index][metric] for seed in seeds]
                row[metric] = statistics.fmean(values) if None not in values else None
                row[f'{metric}_std'] = (statistics.stdev(values)
                                        if None not in values and len(values) > 1 else None)
                row[f'{metric}_per_seed'] = values
            rows.append(row)
    return rows


def comparisons(results, seeds, *, method='rnvp', others=('none', 'noise')):
    """Return, per setting and rival, the paired per-seed differences of AP and FPR95.

    `beats` holds when the mean improvement exceeds one sample std of the differences
    (AP higher, FPR95 lower), the criterion of the method issue's target.
    """
    out = []
    for index, (score, temperature) in enumerate(SETTINGS):
        for other in others:
            if other not in results or method not in results:
                continue
            entry = {'score': score, 'temperature': temperature, 'method': method,
                     'rival': other}
            for metric, sign in (('ap', 1), ('fpr95', -1), ('miou', 1)):
                diffs = [sign * (results[method][s]['rows'][index][metric]
                                 - results[other][s]['rows'][index][metric]) for s in seeds]
                mean = statistics.fmean(diffs)
                std = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
                entry[metric] = {'improvement_per_seed': diffs, 'mean': mean, 'std': std,
                                 'beats': mean > std}
            out.append(entry)
    return out


def format_summary(rows):
    """Return the table with mean +- std in percent."""
    header = f'{"Model":<40} ' + ' '.join(f'{m.upper():>13}' for m in METRICS)
    lines = [header, '-' * len(header)]
    for row in rows:
        score = 'MSP' if row['score'] == 'msp' else 'H'
        name = f'{row["model"]}, {score}, T={row["temperature"]:g}'
        cells = []
        for metric in METRICS:
            mean, std = row[metric], row[f'{metric}_std']
            cells.append('-' if mean is None else
                         f'{100 * mean:.1f} +- {100 * std:.1f}' if std is not None else
                         f'{100 * mean:.1f}')
        lines.append(f'{name:<40} ' + ' '.join(f'{c:>13}' for c in cells))
    return '\n'.join(lines)


def format_comparison(entry):
    """Return one comparison as a line: mean +- std of each improvement, in points."""
    return (f'{entry["method"]} vs {entry["rival"]} ({entry["score"]}, '
            f'T={entry["temperature"]:g}): '
            + ', '.join(f'{m} {100 * entry[m]["mean"]:+.1f} +- {100 * entry[m]["std"]:.1f}'
                        f'{" (beats)" if entry[m]["beats"] else ""}'
                        for m in ('ap', 'fpr95', 'miou')))
