"""Diagnostics of a pretraining run that need no dataset: plain tensors in, numbers out.

* :func:`loss_term_gradients`: the gradient each loss term sends to the encoder, its norm, and the cosine
  between the terms' gradients (do the terms pull the encoder the same way, or against each other?).
* :func:`decompose_tokens`: a tile x position x channel token array split into a per-position mean, a
  per-tile mean and the rest, with the token-class kNN of the probe (``benchmark.pretrain.KNNProbeHook``)
  on the raw tokens and after removing either mean. It tells a token that carries local content from one
  that mostly says where it sits (fixed sin-cos positions, and targets that carry them, make position the
  easiest thing for a student to predict).

Reading the probe tiles through an encoder needs datasets, so it lives above this layer
(``benchmark/diagnose.py``, ``rsbench diagnose``); the logging during pretraining is
``backbones.hooks.LossGradientHook`` and ``KNNProbeHook(decompose=True)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Flags of :func:`decompose_tokens` and the thresholds behind them (documented in docs/pretraining.md).
POSITION_ONLY_SHARE = 0.9  # position explains (nearly) all of the token variance
POSITION_DOMINATED_SHARE = 0.5  # position explains most of it
BURIED_CONTENT_POINTS = 5.0  # removing the position mean raises the kNN by at least this many points
#: Below this share of the total variance a component is numerical noise: its kNN is not reported.
NEGLIGIBLE_SHARE = 1e-6


# --- gradients of the loss terms ---------------------------------------------------------------------


def loss_term_gradients(losses: Mapping[str, Tensor], params: Sequence[Tensor]) -> dict:
    """Per term of ``losses`` (keys starting with ``loss``): the L2 norm of its gradient on ``params``, and the
    cosine between every two terms' gradients; ``total`` is the norm of the summed loss's gradient.

    The graph of ``losses`` must still be alive; it is kept (``retain_graph``) until the last term, and no
    ``.grad`` is touched, so this can run beside a training step. A term that does not reach ``params`` (or
    is switched off by a zero weight) has norm 0 and cosines NaN.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters to take gradients on")
    terms = [k for k in losses if k.startswith("loss") and losses[k].requires_grad]
    flat = {}
    for i, term in enumerate(terms):
        grads = torch.autograd.grad(losses[term], params, retain_graph=i < len(terms) - 1, allow_unused=True)
        flat[term] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                for g, p in zip(grads, params)])  # fmt: skip
    norms = {t: float(g.norm()) for t, g in flat.items()}
    cosine = {}
    for i, a in enumerate(terms):
        for b in terms[i + 1 :]:
            denom = norms[a] * norms[b]
            cosine[f"{a}|{b}"] = float(flat[a] @ flat[b]) / denom if denom > 0 else math.nan
    total = float(sum(flat.values()).norm()) if flat else 0.0
    return {"norms": norms, "cosine": cosine, "total": total}


def format_gradients(report: Mapping) -> list[str]:
    """Log lines of a :func:`loss_term_gradients` report: the norms, then the cosines."""
    norms = ", ".join(f"{k.removeprefix('loss_')} {v:.3g}" for k, v in report["norms"].items())
    cos = ", ".join(f"{k.replace('loss_', '')} {v:+.2f}" for k, v in report["cosine"].items())
    return [f"gradient norm on the encoder per loss term: {norms} (all terms: {report['total']:.3g})",
            f"cosine between the terms' encoder gradients: {cos}"]  # fmt: skip


@contextmanager
def unchanged_state(model: nn.Module) -> Iterator[None]:
    """Run an extra forward/backward of ``model`` and leave no trace: random number generators (torch CPU and
    CUDA, numpy, ``random``), buffers (e.g. a MoCo queue, a DINO centre) and the plain number/flag attributes
    of every submodule (e.g. a step counter) are put back afterwards. Training then draws the same masks
    and follows the same trajectory as without the diagnostic."""
    cpu, py, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    plain = (bool, int, float, str, type(None))
    attrs = [(m, dict((k, v) for k, v in vars(m).items() if isinstance(v, plain))) for m in model.modules()]
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        random.setstate(py)
        np.random.set_state(np_state)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
        for module, saved in attrs:
            vars(module).update(saved)


# --- token features: position, tile, rest -------------------------------------------------------------


def knn_accuracy(fit_x: Tensor, fit_y: Tensor, query_x: Tensor, query_y: Tensor, k: int = 10,
                 exclude_self: bool = False) -> float:  # fmt: skip
    """Accuracy (%) of a k-nearest-neighbour majority vote on dot products of the (L2-normalised) rows.

    The same vote as ``KNNProbeHook._knn`` (``tests/test_diagnostics.py`` checks that they agree), so the
    raw token kNN here is the probe's ``probe_knn_token``.
    """
    sim = query_x @ fit_x.T
    if exclude_self:
        sim.fill_diagonal_(-2.0)
    nearest = sim.topk(min(k, len(fit_y) - int(exclude_self)), dim=1).indices
    n_cls = int(max(fit_y.max(), query_y.max())) + 1
    votes = F.one_hot(fit_y[nearest], n_cls).sum(1)
    return 100.0 * float((votes.argmax(1) == query_y).float().mean())


def token_knn(tokens: Tensor, labels: Tensor, k: int = 10) -> float:
    """The probe's token-class kNN on tokens (T tiles x N positions x C): the tokens of the first T // 2
    tiles are the neighbours of those of the others, cosine similarity, k neighbours."""
    t, n, c = tokens.shape
    x = F.normalize(tokens.reshape(t * n, c).float(), dim=1)
    y = labels.reshape(t * n).long()
    first = (torch.arange(t) < t // 2).repeat_interleave(n)
    return knn_accuracy(x[first], y[first], x[~first], y[~first], k)


def position_prior_accuracy(labels: Tensor) -> float:
    """Accuracy (%) of predicting each query token's class as the most frequent class at its position among
    the neighbour tiles: what a kNN on position-only tokens can reach (its 'chance' level)."""
    t = labels.shape[0]
    fit, query = labels[: t // 2].long(), labels[t // 2 :].long()
    counts = F.one_hot(fit, int(labels.max()) + 1).sum(0)  # N x classes
    return 100.0 * float((counts.argmax(1)[None] == query).float().mean())


def majority_accuracy(labels: Tensor) -> float:
    """Accuracy (%) of predicting every query token as the neighbour tiles' most frequent class."""
    t = labels.shape[0]
    fit, query = labels[: t // 2].reshape(-1).long(), labels[t // 2 :].reshape(-1).long()
    return 100.0 * float((query == torch.bincount(fit).argmax()).float().mean())


def variance_shares(tokens: Tensor) -> dict[str, float]:
    """Shares of the token variance (T x N x C, summed over channels) explained by the per-position mean,
    by the per-tile mean, and the rest (a balanced two-way split: the three add up to 1)."""
    x = tokens.double()
    grand = x.mean((0, 1), keepdim=True)
    total = float((x - grand).pow(2).sum())
    if total <= 0:
        return {"position": math.nan, "tile": math.nan, "rest": math.nan}
    pos = float((x.mean(0, keepdim=True) - grand).pow(2).sum()) * x.shape[0]
    tile = float((x.mean(1, keepdim=True) - grand).pow(2).sum()) * x.shape[1]
    return {"position": pos / total, "tile": tile / total, "rest": 1.0 - (pos + tile) / total}


def decompose_tokens(tokens: Tensor, labels: Tensor, k: int = 10) -> dict:
    """Token features of T tiles (T x N x C, the encoder's raw final tokens) and their classes (T x N).

    Returns the variance shares (:func:`variance_shares`), the probe's token-class kNN on the raw tokens,
    after removing each position's mean (over all T tiles) and after removing each tile's mean, the
    position-prior and majority baselines, and flags:

    * ``position_only``: position explains at least ``POSITION_ONLY_SHARE`` of the variance;
    * ``position_dominated``: at least ``POSITION_DOMINATED_SHARE``;
    * ``buried_content``: removing the position mean raises the kNN by ``BURIED_CONTENT_POINTS`` or more
      (the content is there, but a cosine kNN on the raw tokens is led by position).

    The kNN of a removed-mean variant whose remaining variance is negligible is NaN (it would compare noise).
    """
    if tokens.ndim != 3 or labels.shape != tokens.shape[:2]:
        raise ValueError(f"tokens must be T x N x C and labels T x N, got {tuple(tokens.shape)}, {tuple(labels.shape)}")
    shares = variance_shares(tokens)
    x = tokens.double()
    without_pos = x - x.mean(0, keepdim=True)
    without_tile = x - x.mean(1, keepdim=True)

    def knn_if_left(z: Tensor, left: float) -> float:
        return token_knn(z, labels, k) if left > NEGLIGIBLE_SHARE else math.nan

    raw = token_knn(tokens, labels, k)
    out = {
        "variance": shares,
        "knn_raw": raw,
        "knn_without_position": knn_if_left(without_pos, 1.0 - shares["position"]),
        "knn_without_tile": knn_if_left(without_tile, 1.0 - shares["tile"]),
        "position_prior": position_prior_accuracy(labels),
        "majority": majority_accuracy(labels),
        "tiles": int(tokens.shape[0]),
        "positions": int(tokens.shape[1]),
        "k": k,
    }
    pos_share = shares["position"]
    out["flags"] = {
        "position_only": bool(pos_share >= POSITION_ONLY_SHARE),
        "position_dominated": bool(pos_share >= POSITION_DOMINATED_SHARE),
        "buried_content": bool(out["knn_without_position"] - raw >= BURIED_CONTENT_POINTS),
    }
    return out


def format_decomposition(streams: Mapping[str, Mapping]) -> list[str]:
    """A plain-text table of :func:`decompose_tokens` results by stream (the CLI and the logs print it)."""
    head = (f"{'stream':<8} {'pos share':>9} {'tile share':>10} {'rest':>6} {'kNN raw':>8} {'-pos mean':>9} "
            f"{'-tile mean':>10} {'pos prior':>9}  flags")  # fmt: skip
    lines = [head]
    for name, d in streams.items():
        v = d["variance"]
        flags = ", ".join(f for f, on in d["flags"].items() if on) or "-"
        lines.append(f"{name:<8} {v['position']:>9.3f} {v['tile']:>10.3f} {v['rest']:>6.3f} {d['knn_raw']:>8.1f} "
                     f"{d['knn_without_position']:>9.1f} {d['knn_without_tile']:>10.1f} {d['position_prior']:>9.1f}  "
                     f"{flags}")  # fmt: skip
    return lines


def flatten_decomposition(streams: Mapping[str, Mapping], prefix: str = "") -> dict[str, float]:
    """``{prefix}{stream}_{quantity}: value`` for logging scalars (shares and kNN values; flags left out)."""
    out = {}
    for name, d in streams.items():
        for part, share in d["variance"].items():
            out[f"{prefix}{name}_{part}_share"] = share
        for key in ("knn_raw", "knn_without_position", "knn_without_tile"):
            out[f"{prefix}{name}_{key}"] = d[key]
    return out
