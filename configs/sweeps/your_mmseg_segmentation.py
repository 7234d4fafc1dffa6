# Template: semantic segmentation on your own data in mmsegmentation's img_dir/ann_dir layout
# (rsdatasets/mmseg_segmentation.py; docs/datasets.md, "Your own data"). The tree mmsegmentation's converters
# write for Potsdam, Vaihingen, LoveDA and iSAID (dataset option preset=potsdam|vaihingen|loveda|isaid):
#
#   ROOT/img_dir/{train,val}/<name>.png     images
#   ROOT/ann_dir/{train,val}/<name>.png     one band of class indices
#   ROOT/dsm_dir/{train,val}/<name>.tif     optional heights (also ndsm_dir/, ms_dir/), same names
#   ROOT/classes.json                       {"classes": [...], "ignore_index": 255, "reduce_zero_label": false}
#
# 1. rsbench data check ROOT --dataset mmseg_segmentation
# 2. rsbench sweep configs/sweeps/your_mmseg_segmentation.py --cfg-options dataset.root=ROOT --dry-run
# 3. rsbench sweep configs/sweeps/your_mmseg_segmentation.py --cfg-options dataset.root=ROOT [--track tensorboard]
#
# With a dsm_dir/, feed the heights too: --cfg-options "modalities=[rgb,dsm]" (the row records the modalities).
# `test` reads ann_dir/test when it holds masks, else val/ (Potsdam's and Vaihingen's val are the official test tiles).
name = "your_mmseg_segmentation"
_root = "{{$RSBENCH_DATA_ROOT:data}}/your_mmseg_segmentation"
_vit = dict(img_size=512, patch_size=16)
backbones = [
    dict(name="random_init_vit_s16", checkpoint=None, kwargs=_vit),
    # dict(name="mssdf_vit_b16", checkpoint="checkpoints/mssdf_vit_b16.pth", kwargs=dict(_vit)),
]
tasks = ["segmentation"]
dataset = dict(name="mmseg_segmentation", root=_root)  # classes=..., preset=..., extra_dirs="dsm:dsm_dir"
modalities = ["rgb"]
protocols = ["frozen", "finetune"]
fractions = [0.01, 0.05, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0, 1, 2]
budgets = dict(segmentation=dict(epochs=20, min_iters=500, max_iters=20000, batch_size=8, lr=6e-5,
                                 weight_decay=0.01, warmup_iters=500, val_checks=5, eval_batch_size=8))  # fmt: skip
task_kwargs = dict(segmentation=dict(head_channels=256))
