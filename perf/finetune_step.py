"""Fine-tuning step cost per task: where a step goes (encoder, neck/head, loss, optimiser, metric).

For each task, the fine-tune protocol's model on the synthetic benchmark (ViT-Ti/8 at 64 px, batch 16 by
default, RGB + DSM; change detection and height take RGB) with its full head ("full": UPerNet, GN heads,
Faster R-CNN) and with the frozen protocol's probe head on the trained encoder ("probe", the study's
choice), and the study recipe's optimiser (per-parameter groups). Medians over interleaved repetitions:

- step: forward in loss mode, backward, optimiser step (what a training iteration costs);
- encoder: the encoder's own forward + backward on the same inputs (every call the model makes: two
  dates for change detection), through a fixed random projection of its maps;
- loss: forward in loss mode minus forward in tensor mode (the loss and target building);
- neck/head: forward + backward of the step minus encoder and loss (so it carries the loss's backward);
- optimiser: one optimiser step;
- metric: a predict-mode forward and the metric's ``process`` + ``compute_metrics`` on one eval batch.

The encoder's share of the step says whether a cell compares encoders or trains a decoder. Last line: the
encoder's share of the step per head.

    python perf/finetune_step.py                   # ~3 minutes on 2 quiet cores
    python perf/finetune_step.py --tasks segmentation detection --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from mmengine.optim import build_optim_wrapper

import backbones
from rsdatasets import build_dataset
from tasks import TrainBudget, get_task
from tasks.recipe import optim_wrapper

TASKS = ["segmentation", "classification", "detection", "change_detection", "depth"]
#: The study's fine-tuning recipe (configs/sweeps/study_finetune_synthetic.py): param groups as it runs them.
RECIPE = dict(lr=1e-2, backbone_lr_mult=0.01, layer_decay=0.75, no_decay_1d=True,
              no_decay_keys=("cls_token", "pos_embed"), drop_path_rate=0.1)  # fmt: skip


def _ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def profile(task_name: str, head: str, data, batch: int, reps: int) -> dict[str, float]:
    kwargs = dict(head=head)
    if task_name == "detection":
        kwargs.update(detector="centernet" if head == "probe" else "faster_rcnn", neck_channels=32)
    task = get_task(task_name, **kwargs)
    modalities = task.input_modalities(("rgb", "dsm"))
    torch.manual_seed(0)
    vit = backbones.build("random_init_vit_t16", modalities, img_size=64, patch_size=8)
    calls = []
    encode = vit.encode_inputs

    def recording(inputs):
        calls.append({k: v.detach() for k, v in inputs.items()})
        return encode(inputs)

    vit.encode_inputs = recording  # before the model is built: the probe's EncoderMaps keeps this bound function
    model = task.build_model(vit, modalities)
    model.train()
    wrapper = build_optim_wrapper(model, optim_wrapper(TrainBudget(**RECIPE), model))
    samples = [data[i] for i in range(batch)]
    raw = task.collate(samples, modalities)

    def prepared():
        return model.data_preprocessor(raw, True)

    def forward(mode):
        return model(**prepared(), mode=mode)

    def step():
        loss, _ = model.parse_losses(forward("loss"))  # mmengine's sum of every loss term (lists per level too)
        wrapper.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        wrapper.optimizer.step()

    step()  # warm-up; also records the encoder's inputs of one step
    inputs = calls[-(2 if task_name == "change_detection" else 1) :]
    proj = None

    def encoder():
        nonlocal proj
        total = 0
        for x in inputs:
            maps = encode(x)
            if proj is None:
                proj = [torch.randn_like(m) for m in maps]
            total = total + sum((m * r).sum() for m, r in zip(maps, proj))
        total.backward()

    def fwd_bwd():
        model.parse_losses(forward("loss"))[0].backward()

    metric = task.build_metric()

    def evaluate():
        model.eval()
        with torch.no_grad():
            out = model(**model.data_preprocessor(raw, False), mode="predict")
        metric.results = []
        metric.process(raw, out)
        metric.compute_metrics(metric.results)
        model.train()

    def tensor_forward():
        with torch.no_grad():
            forward("tensor")

    def loss_forward():
        with torch.no_grad():
            forward("loss")

    parts = dict(step=step, encoder=encoder, fwd_bwd=fwd_bwd, fwd_tensor=tensor_forward, fwd_loss=loss_forward,
                 optimiser=wrapper.optimizer.step, metric=evaluate)  # fmt: skip
    times = {k: [] for k in parts}
    for _ in range(reps):  # interleaved: machine noise hits every part alike
        for name, fn in parts.items():
            model.zero_grad(set_to_none=name != "optimiser")
            if name == "optimiser":
                fwd_bwd()  # an optimiser step needs gradients
            times[name].append(_ms(fn, 1))
    t = {k: statistics.median(v) for k, v in times.items()}
    loss = max(t["fwd_loss"] - t["fwd_tensor"], 0.0)
    head_part = max(t["fwd_bwd"] - t["encoder"] - loss, 0.0)
    return dict(step=t["step"], encoder=t["encoder"], head=head_part, loss=loss, optimiser=t["optimiser"],
                metric=t["metric"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--heads", nargs="+", default=["full", "probe"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--root", default=None, help="synthetic data cache (default: rsdatasets' own)")
    args = parser.parse_args()
    data = build_dataset("synthetic", "train", **(dict(root=args.root) if args.root else {}), seed=0, size=64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, ViT-Ti/8 at 64 px; "
          f"median of {args.reps} interleaved repetitions, ms")  # fmt: skip
    print(f"{'task':17} {'head':6} {'step':>7} {'encoder':>8} {'neck/head':>10} {'loss':>6} {'optim':>6} "
          f"{'metric':>7} {'encoder share':>14}")  # fmt: skip
    shares: dict[str, list[float]] = {h: [] for h in args.heads}
    for task_name in args.tasks:
        for head in args.heads:
            r = profile(task_name, head, data, args.batch, args.reps)
            share = 100 * r["encoder"] / max(r["encoder"] + r["head"] + r["loss"] + r["optimiser"], 1e-9)
            shares[head].append(share)
            print(f"{task_name:17} {head:6} {r['step']:7.0f} {r['encoder']:8.0f} {r['head']:10.0f} {r['loss']:6.0f} "
                  f"{r['optimiser']:6.0f} {r['metric']:7.0f} {share:13.0f}%")  # fmt: skip
    summary = "; ".join(f"{h} heads {min(v):.0f}-{max(v):.0f} %" for h, v in shares.items() if v)
    print(f"encoder share of a fine-tuning step (ViT-Ti/8, batch {args.batch}): {summary}")


if __name__ == "__main__":
    main()
