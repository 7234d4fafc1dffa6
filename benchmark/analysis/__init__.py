"""Analysis: what a run's results say, computed when a run directory is read. Nothing here trains or runs a cell.

``rows`` (the result rows as read: directions, methods, primary metrics, each cell's saved tile statistics and
its interval) -> ``intervals`` (the bootstraps, with every constant: confidence, resamples, seeds) ->
``comparisons`` (seed statistics, ranks, paired differences vs random init, label savings, the random-init
check) and ``reference`` (published vs ours) -> ``tables`` and ``plots`` -> ``report`` (what a report holds),
``render`` (Markdown, LaTeX, HTML) and ``summary`` (``rsbench report``, the end of a sweep). ``runinfo`` reads what
a run directory records about how it ran.

May import ``tasks`` and ``backbones`` (declarations: metric directions, resamplers, methods) and, from
``benchmark.running``, only what a run directory holds: ``rundir``, ``store``, ``tilestats`` and ``provenance``
(hashes, versions) — never the spec, cells, executors or anything that runs. So a change here never makes a
stored cell stale (``tests/test_layers.py`` and ``tests/test_fingerprint.py`` hold both).
"""

from .comparisons import baseline_monotonicity, label_savings, paired_comparisons, seed_stats, with_ranks
from .intervals import CONFIDENCE, N_RESAMPLES, N_SEED_RESAMPLES, bootstrap_ci, paired_difference, tile_ci
from .reference import load_reference, published_vs_ours
from .rows import cell_intervals, lower_is_better, method_label, method_of, percent, prepare, primary_metrics
from .runinfo import wall_times

__all__ = ["CONFIDENCE", "N_RESAMPLES", "N_SEED_RESAMPLES", "baseline_monotonicity", "bootstrap_ci", "cell_intervals",
           "label_savings", "load_reference", "lower_is_better", "method_label", "method_of", "paired_comparisons",
           "paired_difference", "percent", "prepare", "primary_metrics", "published_vs_ours", "seed_stats",
           "tile_ci", "wall_times", "with_ranks"]  # fmt: skip
