# Template: binary change detection on your own image pairs in the A/B/label layout (rsdatasets/change_pairs.py;
# docs/datasets.md, "Your own data"). LEVIR-CD, WHU-CD and CDD ship this tree:
#
#   ROOT/A/<name>  ROOT/B/<name>  ROOT/label/<name>    labels 0/255 or 0/1 (change = the larger value)
#   ROOT/list/{train,val,test}.txt                     optional split lists (else ROOT/{train,val,test}/A ... or a
#                                                      seeded split stratified by change, recorded in every row)
#   other folder names: dataset options t1_dir, t2_dir, label_dir (CDD: label_dir=OUT threshold=128, JPEG masks)
#
# 1. rsbench data check ROOT --dataset change_pairs --dataset-options crop=256
# 2. rsbench sweep configs/sweeps/your_change_pairs.py --cfg-options dataset.root=ROOT --dry-run
# 3. rsbench sweep configs/sweeps/your_change_pairs.py --cfg-options dataset.root=ROOT [--track tensorboard]
name = "your_change_pairs"
_root = "{{$RSBENCH_DATA_ROOT:data}}/your_change_pairs"
_vit = dict(img_size=256, patch_size=16)
backbones = [
    dict(name="random_init_vit_s16", checkpoint=None, kwargs=_vit),
    # dict(name="cmid_vit_s16", checkpoint="checkpoints/my_cmid_encoder.pth", kwargs=_vit),
]
tasks = ["change_detection"]
dataset = dict(name="change_pairs", root=_root, crop=256)  # 1024 px LEVIR-CD pairs -> 16 tiles each
modalities = ["rgb"]  # both dates are RGB
protocols = ["frozen", "finetune"]
fractions = [0.01, 0.05, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0, 1, 2]
budgets = dict(change_detection=dict(epochs=20, min_iters=500, max_iters=20000, batch_size=8, lr=1e-4,
                                     weight_decay=0.01, warmup_iters=500, val_checks=5, eval_batch_size=8))  # fmt: skip
