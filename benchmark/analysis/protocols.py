"""Does the frozen protocol predict fine-tuning? The two protocols side by side on the same cells.

A frozen-encoder sweep is ten to a hundred times cheaper than fine-tuning (features are computed once,
only a probe trains), so it is worth knowing whether it ranks backbones as fine-tuning would.
PANGAEA runs both protocols with one seed and torchgeo-bench only the frozen one; this answers it with
intervals:

- **rank agreement**: Kendall's tau-b between the protocols' backbone means, per (task, dataset,
  fraction), and their average over those groups, each with a percentile bootstrap CI that resamples
  the paired seeds (the same split and training seeds for every backbone and both protocols) and, for
  the average, the groups too;
- **disagreements**: the cells (backbone, task, dataset, fraction) whose gain over the reference
  backbone (random init) has 95 % CIs under the two protocols that do not overlap.

Plain pandas, numpy and scipy on the long-format result rows (one row per cell and metric); the gains
and their CIs can come from ``comparisons.paired_comparisons`` (seeds and test tiles resampled together),
else from a bootstrap over paired seeds here. The report (``report.build_report``) adds a section with
``protocol_tables`` when a run holds both protocols.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from .intervals import CONFIDENCE, CONFIDENCE_TEXT, N_RESAMPLES, SEED
from .rows import BASELINE_METHOD, SEED_KEYS
from .tables import DisplayTable, plain_table

PROTOCOLS = ("frozen", "finetune")
GROUP = ["task", "dataset", "fraction"]
SEEDS = SEED_KEYS


@dataclass
class ProtocolAgreement:
    """What ``compare_protocols`` found. ``groups``: one row per (task, dataset, fraction) with ``tau`` and its
    CI; ``tau``/``tau_low``/``tau_high``: their mean over groups; ``cells``: the gain over the reference under
    each protocol with its CI, and ``disagree`` where the two CIs do not overlap."""

    groups: pd.DataFrame
    tau: float
    tau_low: float
    tau_high: float
    cells: pd.DataFrame

    @property
    def disagreements(self) -> pd.DataFrame:
        return self.cells[self.cells["disagree"]]

    def summary(self) -> str:
        """One sentence: the answer, with its interval and the number of disagreeing cells."""
        if not math.isfinite(self.tau):
            return "frozen vs fine-tuning: not enough paired cells to compare the protocols"
        n = int(self.cells["disagree"].sum()) if len(self.cells) else 0
        return (f"frozen vs fine-tuning: Kendall tau {self.tau:.2f} [{self.tau_low:.2f}, {self.tau_high:.2f}] "
                f"over {len(self.groups)} (task, fraction) groups; {n} of {len(self.cells)} cells disagree beyond "
                "their CIs")  # fmt: skip


def _primary(rows: pd.DataFrame, metrics: dict[str, str] | None) -> pd.DataFrame:
    rows = rows[(rows.get("status", "ok") == "ok") & rows["value"].notna() & rows["protocol"].isin(PROTOCOLS)]
    if metrics is not None:
        keep = np.array([metrics.get(t) == m for t, m in zip(rows["task"], rows["metric"])], dtype=bool)
        return rows[keep]
    several = rows.groupby("task")["metric"].nunique()
    if (several > 1).any():
        names = sorted(several[several > 1].index)
        raise ValueError(f"tasks {names} have several metrics: pass metrics={{task: metric}}")
    return rows


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan  # no order to agree on
    return float(scipy_stats.kendalltau(a, b).statistic)


def _group_cube(group: pd.DataFrame) -> tuple[list[str], np.ndarray] | None:
    """(backbones, values[protocol, backbone, seed pair]) over the seed pairs every backbone has under both
    protocols; None when fewer than two backbones or one protocol is missing."""
    cells = group.groupby(["protocol", "backbone", *SEEDS])["value"].mean()
    table = cells.unstack(SEEDS)
    table = table.dropna(axis=1)  # seed pairs present for every (protocol, backbone)
    backbones = sorted(group["backbone"].unique())
    index = pd.MultiIndex.from_product([PROTOCOLS, backbones])
    if table.shape[1] == 0 or not index.isin(table.index).all() or len(backbones) < 2:
        return None
    return backbones, table.loc[index].to_numpy().reshape(len(PROTOCOLS), len(backbones), -1)


def _lower(group: pd.DataFrame) -> bool:
    """Whether the group's metric is lower-is-better, from ``lower`` (analysis.prepare) or the store's column."""
    if "lower" in group:
        return bool(group["lower"].iloc[0])
    if "higher_is_better" in group:
        return not bool(group["higher_is_better"].iloc[0])
    return False


def _gains_from_seeds(rows: pd.DataFrame, reference: str, confidence: float, n_boot: int,
                      rng: np.random.Generator) -> pd.DataFrame:  # fmt: skip
    """Gain over the reference backbone per cell and protocol, with a percentile bootstrap CI over paired seeds
    (NaN with one seed pair). Direction-aware: a positive gain is better whatever the metric's direction."""
    records = []
    for (task, dataset, fraction, protocol), group in rows.groupby([*GROUP, "protocol"], sort=True):
        lower = _lower(group)
        per_seed = group.groupby(["backbone", *SEEDS])["value"].mean().unstack(SEEDS)
        ref = group.loc[group["method"] == reference, "backbone"].unique()
        if len(ref) != 1:
            continue
        for backbone in per_seed.index.drop(ref[0]):
            diff = (per_seed.loc[backbone] - per_seed.loc[ref[0]]).dropna().to_numpy()
            if lower:
                diff = -diff
            low = high = math.nan
            if len(diff) > 1:
                means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
                low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
            records.append(dict(task=task, dataset=dataset, fraction=fraction, protocol=protocol, backbone=backbone,
                                diff=float(diff.mean()) if len(diff) else math.nan, ci_low=low, ci_high=high,
                                lower=False))  # fmt: skip
    return pd.DataFrame.from_records(records)


def _oriented(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Gains with "higher is better" whatever the metric: lower-is-better differences and CIs flipped."""
    out = comparisons.copy()
    lower = out["lower"].astype(bool) if "lower" in out else pd.Series(False, index=out.index)
    diff, low, high = out["diff"].astype(float), out["ci_low"].astype(float), out["ci_high"].astype(float)
    out["diff"] = np.where(lower, -diff, diff)
    out["ci_low"] = np.where(lower, -high, low)
    out["ci_high"] = np.where(lower, -low, high)
    return out


def compare_protocols(
    rows: pd.DataFrame,
    metrics: dict[str, str] | None = None,
    comparisons: pd.DataFrame | None = None,
    reference: str = BASELINE_METHOD,
    confidence: float = CONFIDENCE,
    n_boot: int = N_RESAMPLES,
    seed: int = SEED,
) -> ProtocolAgreement:
    """Put the frozen and fine-tuning protocols side by side on the cells both ran.

    ``rows``: result rows with ``task, dataset, fraction, protocol, backbone, method, split_seed, train_seed,
    metric, value`` (and ``status``, ``lower`` where known); ``metrics``: task -> the metric to compare (its
    primary one); ``comparisons``: ``comparisons.paired_comparisons`` of the same rows (gains over random init
    with seeds x tiles CIs), else the gains are bootstrapped over paired seeds here; ``reference``: the method
    whose backbone the gains are taken against.

    Tau compares the order of the backbones' means (the reference included) within each (task, dataset,
    fraction), so it is unaffected by the metric's direction. The bootstrap resamples the seed pairs of a
    group, shared by every backbone and both protocols (paired), and for the mean over groups also the groups.
    """
    rows = _primary(rows, metrics)
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    records, cubes = [], []
    for key, group in rows.groupby(GROUP, sort=True):
        cube = _group_cube(group)
        if cube is None:
            continue
        backbones, values = cube
        means = values.mean(2)
        tau = _tau(means[0], means[1])
        k = values.shape[2]
        draws = np.array([_tau(*values[:, :, idx].mean(2)) for idx in rng.integers(0, k, (n_boot, k))])
        draws = draws[np.isfinite(draws)]
        low, high = (np.quantile(draws, [alpha, 1 - alpha]) if k > 1 and draws.size else (math.nan, math.nan))
        records.append(dict(zip(GROUP, key), n_backbones=len(backbones), n_seeds=k, tau=tau, tau_low=float(low),
                            tau_high=float(high)))  # fmt: skip
        cubes.append(values)
    groups = pd.DataFrame.from_records(records, columns=[*GROUP, "n_backbones", "n_seeds", "tau", "tau_low",
                                                         "tau_high"])  # fmt: skip
    tau = low = high = math.nan
    valid = [i for i, t in enumerate(groups["tau"]) if math.isfinite(t)]
    if valid:
        tau = float(groups["tau"].iloc[valid].mean())
        draws = []
        for _ in range(n_boot):
            picked = rng.choice(valid, len(valid))
            taus = []
            for i in picked:
                k = cubes[i].shape[2]
                taus.append(_tau(*cubes[i][:, :, rng.integers(0, k, k)].mean(2)))
            draws.append(np.nanmean(taus) if np.isfinite(taus).any() else math.nan)
        draws = np.asarray(draws)
        draws = draws[np.isfinite(draws)]
        if draws.size:
            low, high = (float(q) for q in np.quantile(draws, [alpha, 1 - alpha]))

    gains = _oriented(comparisons) if comparisons is not None else _gains_from_seeds(rows, reference, confidence,
                                                                                    n_boot, rng)  # fmt: skip
    cells = _side_by_side(gains)
    return ProtocolAgreement(groups, tau, low, high, cells)


def _side_by_side(gains: pd.DataFrame) -> pd.DataFrame:
    columns = [*GROUP, "backbone", *(f"{c}_{p}" for p in PROTOCOLS for c in ("gain", "low", "high")), "disagree"]
    if gains.empty:
        return pd.DataFrame(columns=columns)
    gains = gains[gains["protocol"].isin(PROTOCOLS)]
    wide = gains.set_index([*GROUP, "backbone", "protocol"])[["diff", "ci_low", "ci_high"]].unstack("protocol")
    out = pd.DataFrame(index=wide.index)
    for p in PROTOCOLS:
        for column, source in (("gain", "diff"), ("low", "ci_low"), ("high", "ci_high")):
            out[f"{column}_{p}"] = wide[(source, p)] if (source, p) in wide else math.nan
    out = out.dropna(subset=[f"gain_{p}" for p in PROTOCOLS]).reset_index()
    # Beyond their CIs: the two intervals do not overlap (a NaN interval never disagrees).
    out["disagree"] = (out["high_frozen"] < out["low_finetune"]) | (out["high_finetune"] < out["low_frozen"])
    return out[columns]


def agreement_table(result: ProtocolAgreement) -> str:
    """Markdown: the per-group taus and the disagreeing cells, for the report."""
    lines = ["| task | dataset | fraction | backbones | seeds | Kendall tau [95 % CI] |", "|---|---|---|---|---|---|"]
    for r in result.groups.itertuples():
        ci = f" [{r.tau_low:.2f}, {r.tau_high:.2f}]" if math.isfinite(r.tau_low) else ""
        lines.append(f"| {r.task} | {r.dataset} | {r.fraction:g} | {r.n_backbones} | {r.n_seeds} | {r.tau:.2f}{ci} |")
    lines += ["", result.summary() + ".", ""]
    if len(result.disagreements):
        lines += ["| task | fraction | backbone | gain frozen [CI] | gain fine-tuned [CI] |", "|---|---|---|---|---|"]
        for r in result.disagreements.itertuples():
            lines.append(f"| {r.task} | {r.fraction:g} | {r.backbone} | {r.gain_frozen:+.2f} [{r.low_frozen:.2f}, "
                         f"{r.high_frozen:.2f}] | {r.gain_finetune:+.2f} [{r.low_finetune:.2f}, "
                         f"{r.high_finetune:.2f}] |")  # fmt: skip
    return "\n".join(lines)


def has_both_protocols(rows: pd.DataFrame) -> bool:
    """Whether some (task, dataset, fraction) of the run ran under both protocols: the report's cue."""
    if "protocol" not in rows or rows.empty:
        return False
    rows = rows[rows["protocol"].isin(PROTOCOLS)]
    return bool((rows.groupby(GROUP)["protocol"].nunique() == len(PROTOCOLS)).any())


def protocol_tables(result: ProtocolAgreement) -> list[tuple[str, DisplayTable]]:
    """The report's tables: Kendall tau per (task, dataset, fraction), and the cells that disagree."""
    groups = result.groups.rename(columns={"n_backbones": "backbones", "n_seeds": "seed pairs", "tau_low": "CI low",
                                           "tau_high": "CI high", "tau": "Kendall tau"})  # fmt: skip
    tau_note = (f"{result.summary()}; tau-b between the two protocols' backbone means, {CONFIDENCE_TEXT} percentile "
                "bootstrap over the paired seeds (no CI with one seed pair)")  # fmt: skip
    cells = result.disagreements.drop(columns="disagree")
    cell_note = (f"gain over random init under each protocol (higher is better, error metrics flipped) with "
                 f"{CONFIDENCE_TEXT} CIs that do not overlap" + ("; none" if cells.empty else ""))
    return [
        ("protocols-tau", plain_table(groups, "Frozen vs fine-tuning: does the frozen protocol rank backbones as "
                                              "fine-tuning does?", tau_note)),
        ("protocols-disagree", plain_table(cells, "Cells whose gains over random init disagree between the "
                                                  "protocols", cell_note)),
    ]  # fmt: skip
