# The downstream protocols published for MSSDF (arXiv 2506.09327; shared/docs/paper-numbers.md and
# methods.md), on the real datasets: ISPRS Potsdam and Vaihingen segmentation at 50 % and 100 % of the
# training labels, US3D height estimation and SECOND binary change detection with all labels, AID and
# NWPU-RESISC45 scene classification (linear probe, frozen encoder) at 20 % and 100 %.
#
# Before running it:
# 1. Convert the checkpoints (they are not downloaded here; paths are relative to the current directory,
#    or set RSBENCH_CHECKPOINTS): `validate` stops with "... does not exist ...; <command>" until they exist.
#      rsbench convert mssdf vit_base_500.pth checkpoints/mssdf_vit_b16.pth           # official MSSDF release
#      rsbench convert mae mae_pretrain_vit_base.pth checkpoints/mae_vit_b16.pth       # official MAE ViT-B/16
# 2. Put the datasets under data/ (or set RSBENCH_DATA_ROOT) in their original layouts and check them:
#      rsbench data check data/potsdam --dataset potsdam        (docs/datasets.md, docs/datasets_more.md)
# 3. rsbench sweep configs/sweeps/mssdf_paper.py --dry-run      # cells, what is done, estimated time
#    rsbench sweep configs/sweeps/mssdf_paper.py --executor slurm --slurm partition=gpu
#
# Every budget below is the released downstream config of github.com/CVEO/MSSDF at 562b6f5, option by
# option, as mmengine resolves its inheritance (segmentation and depth: AdamW lr 6e-5, wd 0.01, no decay on
# cls_token / pos_embed, drop path 0.2, LinearLR from 1e-6 over 1500 iterations then PolyLR to 0, batch 2;
# classification: a linear probe, AdamW lr 1e-3 with layer decay 0.75, 5 warm-up epochs, cosine to 1e-6 over
# 100 epochs, batch 32). docs/finetune.md has the table (file and line of each value, and what the release
# does that rsbench does not: augmentation, VPD's depth head); configs/sweeps/released_recipes.csv is that
# table, and tests/test_released_recipes.py holds this file to it. Change detection is not released: it
# takes the segmentation recipe. Every released protocol is RGB only, so the cells feed RGB (the DSM
# embedding of the MSSDF encoder stays unused); for "segmentation with DSM" set dsm=True and
# modalities=["rgb", "dsm"] in the segmentation entries.
# Reference rows: results/reference/mssdf_2025.csv.
name = "mssdf_paper"
_data = "{{$RSBENCH_DATA_ROOT:data}}"
_ckpt = "{{$RSBENCH_CHECKPOINTS:checkpoints}}"

backbones = [
    dict(name="mssdf_vit_b16", checkpoint=f"{_ckpt}/mssdf_vit_b16.pth", kwargs=dict(),
         hint=f"convert the official release: rsbench convert mssdf vit_base_500.pth {_ckpt}/mssdf_vit_b16.pth"),
    dict(name="mae_vit_b16", checkpoint=f"{_ckpt}/mae_vit_b16.pth", kwargs=dict(),
         hint=f"convert the official MAE ViT-B: rsbench convert mae mae_pretrain_vit_base.pth {_ckpt}/mae_vit_b16.pth"),
    dict(name="random_init_vit_b16", checkpoint=None, kwargs=dict()),
    # The positive control (the papers' "ImageNet supervised" row): timm's ImageNet ViT-B/16, saved with
    # torch.save(timm.create_model("vit_base_patch16_224.augreg_in1k", pretrained=True).state_dict(), path)
    # where the weights can be downloaded; reports mark it "(reference)".
    dict(name="timm_vit_b16", checkpoint=f"{_ckpt}/timm_vit_b16_in1k.pth", kwargs=dict(),
         hint=f"convert a timm ImageNet ViT-B/16: rsbench convert timm vit_b16_in1k.pth {_ckpt}/timm_vit_b16_in1k.pth"),
]  # fmt: skip
tasks = ["segmentation", "depth", "change_detection", "classification"]
modalities = ["rgb"]
fractions = [1.0]  # per-dataset "fractions" below win
split_seeds = [0]
train_seeds = [0, 1, 2]

_isprs = dict(labels="no_boundary", crop=512, dsm=False, fractions=[0.5, 1.0])
datasets = dict(
    segmentation=[
        dict(name="potsdam", root=f"{_data}/potsdam", image="RGB", **_isprs),
        dict(name="vaihingen", root=f"{_data}/vaihingen", **_isprs),  # IRRG: the only optical product
    ],
    depth=[dict(name="us3d", root=f"{_data}/us3d", crop=512)],
    change_detection=[dict(name="second", root=f"{_data}/second")],  # binary: any non-white label1 pixel
    classification=[
        dict(name="aid", root=f"{_data}/aid", size=224, fractions=[0.2, 1.0], protocols=["frozen"]),  # linear probe
        dict(name="resisc45", root=f"{_data}/resisc45", size=224, fractions=[0.2, 1.0], protocols=["frozen"]),
    ],
)
_long = 10**7  # epoch budgets: the epochs decide, this cap never does
# The released segmentation recipe (segmentation/configs/potsdam_seg/vit-base-random-potsdam.py, inherited by
# vit-base-msf-potsdam.py; its schedule.py's lr 1e-3 and backbone lr_mult 0.1 are replaced by `_delete_=True`).
_seg = dict(optimizer="AdamW", lr=6e-5, weight_decay=0.01, no_decay_keys=("pos_embed", "cls_token"), drop_path_rate=0.2,
            warmup_iters=1500, warmup_start=1e-6, decay="poly", poly_power=1.0, eta_min=0.0, clip_grad=0.0,
            batch_size=2, eval_batch_size=8, log_interval=50)  # fmt: skip
budgets = dict(
    segmentation=dict(_seg, max_iters=80000),
    # depthest/configs/potsdam_seg: the same optimiser; 30 epochs while the PolyLR is planned to 80k iterations
    depth=dict(_seg, epochs=30, max_iters=_long, decay_iters=80000),
    change_detection=dict(_seg, max_iters=40000),  # not released: the segmentation recipe, 40k iterations
    # classification/configs/aid_lp_full/vit-base-aid-ft-full.py: a linear probe (frozen_stages=12)
    classification=dict(optimizer="AdamW", lr=1e-3, weight_decay=0.05, layer_decay=0.75,
                        no_decay_keys=(".ln", ".bias", ".cls_token", ".pos_embed"), warmup_fraction=0.05,
                        warmup_start=1e-4, decay="cosine", eta_min=1e-6, epochs=100, max_iters=_long, batch_size=32,
                        clip_grad=0.0, eval_batch_size=64, log_interval=50),
)  # fmt: skip
# Fixed schedules, last iterate, as released: no validation split carved from the labels.
budgets = {task: dict(budget, val_checks=0) for task, budget in budgets.items()}
protocols = ["finetune"]  # classification's entries say frozen (the released linear-probe configs)
task_kwargs = dict(
    segmentation=dict(head_channels=512, exclude_from_miou=["clutter"]),  # reports mIoU and mIoU_excl_clutter
    depth=dict(target="ndsm"),  # US3D AGL heights in metres
    change_detection=dict(),
    classification=dict(),  # class names come from each dataset
)
slurm = dict(time_min=24 * 60, gpus=1, cpus=8, mem_gb=64)
