# The downstream protocols of CMID's official README (TGRS 2023, arXiv 2304.09670; shared/docs/
# paper-numbers.md), all fine-tuned with all training labels: UC Merced classification (8:2 split),
# ISPRS Potsdam and Vaihingen segmentation, DOTA v1.0 detection (horizontal boxes, mAP@0.5 on the
# official val split, as test labels are withheld) and CDD change detection.
#
# Before running it:
# 1. Convert the checkpoint (it is not downloaded here; paths are relative to the current directory,
#    or set RSBENCH_CHECKPOINTS): `validate` stops with "... does not exist ...; <command>" until it exists.
#      rsbench convert cmid CMID_ResNet50_bk_200ep.pth checkpoints/cmid_resnet50.pth   # official CMID release
#    (or pretrain with rsbench pretrain and point `checkpoint` at its encoder.pth)
# 2. Put the datasets under data/ (or set RSBENCH_DATA_ROOT) in their original layouts and check them:
#      rsbench data check data/dota --dataset dota              (docs/datasets.md, docs/datasets_more.md)
# 3. rsbench sweep configs/sweeps/cmid_paper.py --dry-run       # cells, what is done, estimated time
#    rsbench sweep configs/sweeps/cmid_paper.py --executor slurm --slurm partition=gpu
#
# Every budget below is the released fine-tuning config of the ResNet-50 in github.com/NJU-LHRS/official-CMID
# at 6e1de74, option by option (classification: Pretrain/ft_config.yaml, Adan; segmentation:
# SemanticSegmentation/config/CMID-ResNet50_config.py, SGD; detection: Detection/config/CMID-ResNet-50_config.py,
# SGD with a step schedule; change detection: ChangeDetection/train.py, SGD). The Swin-B recipes differ (AdamW,
# drop path): configs/sweeps/cmid_paper_swin.py. docs/finetune.md has the table with file and line of each value
# and what rsbench does not do (augmentation, rotated boxes, BIT's change head); configs/sweeps/
# released_recipes.csv is that table, held to this file by tests/test_released_recipes.py. Inputs are RGB, as
# in the README's evaluations. A random-init ResNet-50 is the floor, trained with the same recipe (the README:
# other ResNet-50 methods use the same configs with another checkpoint). Reference rows:
# results/reference/cmid_2023.csv.
name = "cmid_paper"
_data = "{{$RSBENCH_DATA_ROOT:data}}"
_ckpt = "{{$RSBENCH_CHECKPOINTS:checkpoints}}"

backbones = [
    dict(name="cmid_resnet50", checkpoint=f"{_ckpt}/cmid_resnet50.pth", kwargs=dict(),
         hint=f"convert the official release: rsbench convert cmid <CMID ResNet-50 file> {_ckpt}/cmid_resnet50.pth"),
    dict(name="random_init_resnet50", checkpoint=None, kwargs=dict()),
]  # fmt: skip
tasks = ["classification", "segmentation", "detection", "change_detection"]
modalities = ["rgb"]
fractions = [1.0]
split_seeds = [0]
train_seeds = [0, 1, 2]

_isprs = dict(labels="no_boundary", crop=512, dsm=False)
datasets = dict(
    classification=[dict(name="ucmerced", root=f"{_data}/ucmerced", train_ratio=0.8, size=224)],
    segmentation=[
        dict(name="potsdam", root=f"{_data}/potsdam", image="RGB", **_isprs),
        dict(name="vaihingen", root=f"{_data}/vaihingen", **_isprs),
    ],
    detection=[dict(name="dota", root=f"{_data}/dota", crop=1024, overlap=200)],
    change_detection=[dict(name="cdd", root=f"{_data}/cdd")],
)
_long = 10**7  # epoch budgets: the epochs decide, this cap never does
budgets = dict(
    # Pretrain/ft_config.yaml (+ the README's --batch-size 16): Adan, 200 epochs, 5 warm-up epochs, cosine to 1e-6
    classification=dict(optimizer="Adan", lr=0.003125, weight_decay=0.02, no_decay_1d=True, clip_grad=0.0,
                        epochs=200, max_iters=_long, warmup_fraction=5 / 200, warmup_start=0.01, decay="cosine",
                        eta_min=1e-6, batch_size=16, eval_batch_size=64, log_interval=50),
    # CMID-ResNet50_config.py: SGD, 50 epochs, 100 linear warm-up iterations (mmcv's ratio 0.1), cosine to 1e-6
    segmentation=dict(optimizer="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4, clip_grad=0.0, epochs=50,
                      max_iters=_long, warmup_iters=100, warmup_start=0.1, decay="cosine", eta_min=1e-6, batch_size=8,
                      eval_batch_size=8, log_interval=50),
    # CMID-ResNet-50_config.py: SGD, 12 epochs, steps at epochs 8 and 11, 500 warm-up iterations from 1/3
    detection=dict(optimizer="SGD", lr=0.005, momentum=0.9, weight_decay=1e-4, clip_grad=35.0, epochs=12,
                   max_iters=_long, warmup_iters=500, warmup_start=1 / 3, decay="step",
                   step_milestones=(8 / 12, 11 / 12), batch_size=2, eval_batch_size=4, log_interval=50),
    # ChangeDetection/train.py: SGD (momentum 0.99), 200 epochs, lr decaying linearly to 0, no warm-up
    change_detection=dict(optimizer="SGD", lr=0.002, momentum=0.99, weight_decay=5e-4, clip_grad=0.0, epochs=200,
                          max_iters=_long, warmup_iters=0, decay="poly", poly_power=1.0, batch_size=8,
                          eval_batch_size=8, log_interval=50),
)  # fmt: skip
task_kwargs = dict(
    classification=dict(),  # class names come from each dataset
    segmentation=dict(head_channels=512, exclude_from_miou=["clutter"]),  # reports mIoU and mIoU_excl_clutter
    detection=dict(neck_channels=256, fc_channels=1024),  # the released FPN and box head widths
    change_detection=dict(),
)
protocols = ["finetune"]  # every published CMID protocol fine-tunes
# Fixed schedules, last iterate, as published: no validation split carved from the labels.
budgets = {task: dict(budget, val_checks=0) for task, budget in budgets.items()}
slurm = dict(time_min=24 * 60, gpus=1, cpus=8, mem_gb=64)
