"""``rsbench diagnose``: what an encoder's tokens hold, and how a pretraining model's loss terms pull its encoder.

* ``rsbench diagnose ENCODER.pth``: the token decomposition (``backbones.diagnostics.decompose_tokens``) of
  the encoder's raw final tokens on the probe tiles, read exactly as ``KNNProbeHook`` reads them (the
  synthetic ``val`` split, 100 tiles, the first half as neighbours for the second, k = 10), for each
  modality stream alone and for the fused tokens downstream tasks read.
* ``rsbench diagnose CHECKPOINT --config CONFIG``: a training checkpoint (``epoch_N.pth``) of that config:
  each loss term's gradient on the encoder for one batch of the config's pool, plus the decomposition of
  the model's exported encoder.

The dataset-reading half of the diagnostics (the tensor half is ``backbones/diagnostics.py``, which may not
read datasets). ``KNNProbeHook`` calls :func:`log_decomposition` beside its own probe lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

#: Stream name of the fused tokens (what the probe and downstream tasks read).
FUSED = "fused"


def has_streams(encoder) -> bool:
    """Whether each modality can run through the encoder alone (a ViT with one patch embedding per modality)."""
    return hasattr(encoder, "patch_embeds") and hasattr(encoder, "encode")


def probe_tokens(encoder, data, max_samples: int = 100, streams: bool = True,
                 fused: bool = True) -> tuple[dict, object]:  # fmt: skip
    """({stream: T x N x C raw final tokens}, T x N token classes) of the first ``max_samples`` tiles of ``data``.

    As ``KNNProbeHook._probe``: batches of 25, normalised inputs, the encoder's own frozen forward (its last
    map), and each token's class the dominant segmentation class of its cell. ``streams`` adds each
    modality alone (a ViT's patch embedding of that modality through the shared transformer); ``fused=False``
    leaves out the encoder's own forward (the probe hook has those tokens already).
    """
    import torch
    import torch.nn.functional as F

    from backbones.normalize import normalize_modalities
    from tasks.features import frozen_parts

    encode = frozen_parts(encoder)[0]
    per_modality = streams and has_streams(encoder)
    names = [*(encoder.modalities if per_modality else ()), *([FUSED] if fused else [])]
    tokens = {name: [] for name in names}
    labels = []
    n = min(len(data), max_samples)
    keys = (*encoder.modalities, *(f"{m}_valid" for m in encoder.modalities))
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, 25):
                samples = [data[i] for i in range(start, min(start + 25, n))]
                x = normalize_modalities({k: torch.stack([s[k] for s in samples]) for k in keys if k in samples[0]})
                maps = {FUSED: encode(x)[-1]} if fused else {}
                if per_modality:
                    maps.update({m: encoder.encode(encoder.patch_embeds[m](x[m]))[-1] for m in encoder.modalities})
                for name, last in maps.items():  # B x C x h x w -> B x hw x C
                    tokens[name].append(last.flatten(2).transpose(1, 2).float())
                h, w = next(iter(maps.values())).shape[-2:]
                for sample in samples:
                    mask = sample["mask"].long()
                    ph, pw = mask.shape[0] // h, mask.shape[1] // w
                    onehot = F.one_hot(mask[: h * ph, : w * pw].reshape(h, ph, w, pw), 256)
                    labels.append(onehot.sum((1, 3)).argmax(-1).reshape(-1))
    finally:
        encoder.train(was_training)
    return {name: torch.cat(t) for name, t in tokens.items()}, torch.stack(labels)


def decompose_encoder(encoder, data, max_samples: int = 100, k: int = 10, fused=None) -> dict[str, dict]:
    """{stream: ``decompose_tokens`` result} for an encoder on a labelled split (see :func:`probe_tokens`).

    ``fused``: (T x N x C tokens, T x N classes) the caller already read from the encoder's own forward (the
    probe hook's), so only the single-modality streams are encoded here.
    """
    from backbones.diagnostics import decompose_tokens

    if fused is None:
        tokens, labels = probe_tokens(encoder, data, max_samples)
    else:
        tokens, labels = probe_tokens(encoder, data, max_samples, fused=False) if has_streams(encoder) else ({}, None)
        if labels is not None and (labels.shape != fused[1].shape or (labels != fused[1]).any()):
            raise ValueError("the fused tokens given were read from other tiles than the streams")
        tokens[FUSED], labels = fused
    return {name: decompose_tokens(t, labels, k) for name, t in tokens.items()}


def log_decomposition(runner, encoder, data, max_samples: int, k: int, epoch: int, fused=None) -> dict[str, dict]:
    """The decomposition beside ``KNNProbeHook``'s probe lines: in the log, on ``runner.probe_decomposition``
    and, one JSON object per probe, in ``<log_dir>/probe_decomposition.jsonl``. ``fused``: the probe's own
    tokens and classes (see :func:`decompose_encoder`)."""
    from mmengine.dist import is_main_process

    from backbones.diagnostics import format_decomposition

    result = decompose_encoder(encoder, data, max_samples, k, fused)
    runner.logger.info(f"token decomposition (raw final tokens, k={k}, {result[FUSED]['tiles']} tiles) after epoch "
                       f"{epoch}:\n" + "\n".join(format_decomposition(result)))  # fmt: skip
    entry = {"epoch": epoch, "streams": result}
    runner.probe_decomposition = [*getattr(runner, "probe_decomposition", []), entry]
    if is_main_process():
        with open(Path(runner.log_dir) / "probe_decomposition.jsonl", "a") as fh:
            fh.write(json.dumps(_plain(entry)) + "\n")
    return result


def _plain(value):
    """JSON-ready: NaN (a kNN with nothing left to compare) becomes null, which strict JSON readers accept."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# --- a training checkpoint: gradients of the loss terms ---------------------------------------------------


def build_from_training_checkpoint(config: str | Path, checkpoint: str | Path, cfg_options: dict | None = None):
    """(model with the checkpoint's weights, config): the pretraining model a config builds, in train mode.

    The curriculum's DSM masking probability is the one the checkpoint's run had last set (its message hub),
    and the config's ``MaskingCurriculumHook(min_dsm_visible=...)`` is applied, so the batch is masked as the
    run masked it at that point.
    """
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import backbones  # noqa: F401  (declares the package the pretraining methods register from)
    from rsbench.registry import MODELS

    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get("default_scope", "rsbench"))
    model = MODELS.build(cfg.model)
    blob = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(blob.get("state_dict", blob))
    scalars = (blob.get("message_hub") or {}).get("log_scalars", {})
    if "train/dsm_extra_p" in scalars and hasattr(model, "dsm_extra_p"):
        model.dsm_extra_p = float(scalars["train/dsm_extra_p"].current())
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "MaskingCurriculumHook" and hook.get("min_dsm_visible") is not None:
            from backbones.mssdf.masking import SCALED_MIN_DSM_VISIBLE

            share = hook["min_dsm_visible"]
            model.dsm_min_visible = SCALED_MIN_DSM_VISIBLE if share == "scaled" else float(share)
    return model.train(), cfg


def pool_batch(cfg, batch_size: int | None = None, seed: int = 0) -> dict:
    """The first ``batch_size`` samples (default: the config's batch) of the config's pretraining pool, collated;
    augmentation (if the pool has it) drawn from ``seed``."""
    import torch
    from torch.utils.data import default_collate

    import rsdatasets  # noqa: F401  (declares the package the pretraining pools register from)
    from rsbench.registry import DATASETS

    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    size = min(batch_size or cfg.train_dataloader.batch_size, len(dataset))
    torch.manual_seed(seed)
    return default_collate([dataset[i] for i in range(size)])


def checkpoint_gradients(model, batch: dict) -> dict:
    """``loss_term_gradients`` of ``model`` (a pretraining model) on one collated batch, on its encoder."""
    from backbones.diagnostics import loss_term_gradients

    data = model.data_preprocessor(batch, True)
    losses = model._run_forward(data, mode="loss")
    encoder = model.export_encoder() if hasattr(model, "export_encoder") else model
    report = loss_term_gradients(losses, list(encoder.parameters()))
    report["losses"] = {k: float(v.detach()) for k, v in losses.items() if k.startswith("loss")}
    return report


# --- the command ---------------------------------------------------------------------------------------


def add_parser(sub, options_action, dict_action) -> None:
    """``rsbench diagnose`` (added by ``benchmark.cli.build_parser``)."""
    p = sub.add_parser("diagnose", help="token decomposition of an encoder.pth; with --config, also each loss "
                       "term's gradient on the encoder from a training checkpoint")  # fmt: skip
    p.add_argument("checkpoint", help="an encoder.pth, or with --config a training checkpoint (epoch_N.pth)")
    p.add_argument("--config", default=None, help="the pretraining config of a training checkpoint")
    p.add_argument("--backbone", default=None, help="registered backbone to load an encoder.pth into "
                   "(default <method>_<arch> from its metadata, e.g. mssdf_vit_t16)")  # fmt: skip
    p.add_argument("--dataset", default=None, help="labelled probe dataset (default: the synthetic benchmark, "
                   "or the config pool's dataset)")  # fmt: skip
    p.add_argument("--dataset-options", nargs="+", action=options_action, default=None,
                   help="e.g. size=64 root=/data (default size: the encoder's input size)")  # fmt: skip
    p.add_argument("--split", default="val", help="probe split (default val, as the kNN probe)")
    p.add_argument("--max-samples", type=int, default=100, help="probe tiles (default 100, as the kNN probe)")
    p.add_argument("-k", type=int, default=10, help="neighbours (default 10, as the kNN probe)")
    p.add_argument("--batch-size", type=int, default=None, help="gradient batch (default: the config's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the gradient batch's masks and augmentation")
    p.add_argument("--cfg-options", nargs="+", action=dict_action, help="override config keys, e.g. "
                   "model.loss_weights.align=0")  # fmt: skip
    p.add_argument("--json", default=None, help="also write everything to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    import backbones
    from backbones.diagnostics import format_decomposition, format_gradients
    from rsdatasets import build_dataset

    out: dict = {"checkpoint": str(args.checkpoint)}
    if args.config:
        model, cfg = build_from_training_checkpoint(args.config, args.checkpoint, args.cfg_options)
        torch.manual_seed(args.seed)
        report = checkpoint_gradients(model, pool_batch(cfg, args.batch_size, args.seed))
        out["gradients"] = report
        print("loss terms on one batch of the config's pool: "
              + ", ".join(f"{k} {v:.4g}" for k, v in report["losses"].items()))  # fmt: skip
        for line in format_gradients(report):
            print(line)
        encoder = model.export_encoder()
        # The probe split of the pool's own dataset, as KNNProbeHook builds it (same root, size and seed).
        pool = dict(cfg.train_dataloader.dataset)
        own = ("type", "dataset", "split", "modalities", "max_samples", "augment", "n")
        source = {"name": pool.get("dataset", "synthetic"), **{k: v for k, v in pool.items() if k not in own}}
    else:
        meta = backbones.checkpoint.read_meta(args.checkpoint)
        name = args.backbone or f"{meta.get('method', '')}_{meta.get('arch', '')}"
        modalities = tuple(meta.get("modalities") or ("rgb", "dsm"))
        encoder = backbones.build(name, modalities, checkpoint=args.checkpoint)
        source = {"name": "synthetic", "size": int(meta.get("img_size", 64))}
    if args.dataset:
        source = {"name": args.dataset}
    source.update(args.dataset_options or {})
    data = build_dataset(source.pop("name"), args.split, **source)
    result = decompose_encoder(encoder, data, args.max_samples, args.k)
    out["tokens"] = result
    print(f"token decomposition of the raw final tokens ({result[FUSED]['tiles']} {args.split} tiles, k={args.k}; "
          f"'{FUSED}' is what the kNN probe and downstream tasks read):")  # fmt: skip
    for line in format_decomposition(result):
        print(line)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_plain(out), indent=2))
        print(f"written to {args.json}")
    return 0
