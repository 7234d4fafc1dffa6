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
# Published: segmentation ViT-B at 512 px, UPerNet + auxiliary FCN head, AdamW lr 6e-5, 80k iterations;
# classification frozen-encoder. Not published, chosen here (change them in one place below): batch
# sizes, weight decay, warm-up, and the depth, change and classification schedules. Every published
# protocol is RGB only, so the cells feed RGB (the DSM embedding of the MSSDF encoder stays unused);
# for "segmentation with DSM" set dsm=True and modalities=["rgb", "dsm"] in the segmentation entries.
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
        dict(name="aid", root=f"{_data}/aid", fractions=[0.2, 1.0], protocols=["frozen"]),  # linear probe
        dict(name="resisc45", root=f"{_data}/resisc45", fractions=[0.2, 1.0], protocols=["frozen"]),
    ],
)
budgets = dict(
    segmentation=dict(max_iters=80000, batch_size=8, lr=6e-5, weight_decay=0.01, warmup_iters=1500,
                      eval_batch_size=8, log_interval=50),
    depth=dict(max_iters=40000, batch_size=8, lr=1e-4, weight_decay=0.01, warmup_iters=1500, eval_batch_size=8,
               log_interval=50),
    change_detection=dict(max_iters=40000, batch_size=8, lr=1e-4, weight_decay=0.01, warmup_iters=1500,
                          eval_batch_size=8, log_interval=50),
    classification=dict(max_iters=10000, batch_size=64, lr=1e-3, weight_decay=0.0, warmup_iters=500,
                        eval_batch_size=64, log_interval=50),
)  # fmt: skip
# Fixed schedules, last iterate, as published: no validation split carved from the labels.
budgets = {task: dict(budget, val_checks=0) for task, budget in budgets.items()}
protocols = ["finetune"]  # classification's entries say frozen (the released linear-probe configs)
task_kwargs = dict(
    segmentation=dict(head_channels=512, exclude_from_miou=["clutter"]),  # reports mIoU and mIoU_excl_clutter
    depth=dict(target="ndsm"),  # US3D AGL heights in metres
    change_detection=dict(),
    classification=dict(),  # class names come from each dataset
)
slurm = dict(time_min=24 * 60, gpus=1, cpus=8, mem_gb=64)
