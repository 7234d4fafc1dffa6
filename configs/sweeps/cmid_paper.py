# The downstream protocols of CMID's official README (TGRS 2023, arXiv 2304.09670; shared/docs/
# paper-numbers.md), all fine-tuned with all training labels: UC Merced classification (8:2 split),
# ISPRS Potsdam and Vaihingen segmentation, DOTA v1.0 detection (horizontal boxes, mAP@0.5 on the
# official val split, as test labels are withheld) and CDD change detection.
#
# Before running it:
# 1. Convert the checkpoints (they are not downloaded here; paths are relative to the current directory,
#    or set RSBENCH_CHECKPOINTS): `validate` stops with "... does not exist ...; <command>" until they exist.
#      rsbench convert cmid CMID_ResNet50_bk_200ep.pth checkpoints/cmid_resnet50.pth   # official CMID releases
#      rsbench convert cmid CMID_Swin-B_bk_200ep.pth checkpoints/cmid_swin_b.pth
#    (or pretrain with rsbench pretrain and point `checkpoint` at its encoder.pth)
# 2. Put the datasets under data/ (or set RSBENCH_DATA_ROOT) in their original layouts and check them:
#      rsbench data check data/dota --dataset dota              (docs/datasets.md, docs/datasets_more.md)
# 3. rsbench sweep configs/sweeps/cmid_paper.py --dry-run       # cells, what is done, estimated time
#    rsbench sweep configs/sweeps/cmid_paper.py --executor slurm --slurm partition=gpu
#
# The README gives the numbers, not the fine-tuning schedules: every budget below is an rsbench choice
# (one place to change it). Inputs are RGB, as in the README's evaluations. A random-init ResNet-50 is
# the floor. Reference rows: results/reference/cmid_2023.csv.
name = "cmid_paper"
_data = "{{$RSBENCH_DATA_ROOT:data}}"
_ckpt = "{{$RSBENCH_CHECKPOINTS:checkpoints}}"

backbones = [
    dict(name="cmid_resnet50", checkpoint=f"{_ckpt}/cmid_resnet50.pth", kwargs=dict(),
         hint=f"convert the official release: rsbench convert cmid <CMID ResNet-50 file> {_ckpt}/cmid_resnet50.pth"),
    dict(name="cmid_swin_b", checkpoint=f"{_ckpt}/cmid_swin_b.pth", kwargs=dict(),
         hint=f"convert the official release: rsbench convert cmid <CMID Swin-B file> {_ckpt}/cmid_swin_b.pth"),
    dict(name="random_init_resnet50", checkpoint=None, kwargs=dict()),
]  # fmt: skip
tasks = ["classification", "segmentation", "detection", "change_detection"]
modalities = ["rgb"]
fractions = [1.0]
split_seeds = [0]
train_seeds = [0, 1, 2]

_isprs = dict(labels="no_boundary", crop=512, dsm=False)
datasets = dict(
    classification=[dict(name="ucmerced", root=f"{_data}/ucmerced", train_ratio=0.8)],
    segmentation=[
        dict(name="potsdam", root=f"{_data}/potsdam", image="RGB", **_isprs),
        dict(name="vaihingen", root=f"{_data}/vaihingen", **_isprs),
    ],
    detection=[dict(name="dota", root=f"{_data}/dota", crop=1024, overlap=200)],
    change_detection=[dict(name="cdd", root=f"{_data}/cdd")],
)
budgets = dict(
    classification=dict(max_iters=5000, batch_size=64, lr=1e-4, weight_decay=0.05, warmup_iters=500,
                        eval_batch_size=64, log_interval=50),
    segmentation=dict(max_iters=80000, batch_size=8, lr=6e-5, weight_decay=0.01, warmup_iters=1500,
                      eval_batch_size=8, log_interval=50),
    detection=dict(max_iters=40000, batch_size=4, lr=1e-4, weight_decay=0.05, warmup_iters=1000,
                   eval_batch_size=4, log_interval=50),
    change_detection=dict(max_iters=40000, batch_size=8, lr=1e-4, weight_decay=0.01, warmup_iters=1500,
                          eval_batch_size=8, log_interval=50),
)  # fmt: skip
task_kwargs = dict(
    classification=dict(),  # class names come from each dataset
    segmentation=dict(head_channels=512, exclude_from_miou=["clutter"]),  # reports mIoU and mIoU_excl_clutter
    detection=dict(neck_channels=256),
    change_detection=dict(),
)
protocols = ["finetune"]  # every published CMID protocol fine-tunes
# Fixed schedules, last iterate, as published: no validation split carved from the labels.
budgets = {task: dict(budget, val_checks=0) for task, budget in budgets.items()}
slurm = dict(time_min=24 * 60, gpus=1, cpus=8, mem_gb=64)
