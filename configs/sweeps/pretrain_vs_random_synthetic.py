# Does CPU-sized pretraining help on the synthetic benchmark? MSSDF and MAE encoders (pretrained
# with the configs of the same names in configs/pretrain/, same data and budget) against random
# init, on segmentation at 1 %, 5 % and 100 % of the labels, three training seeds.
# Run the two pretraining configs first; their encoders land in results/pretrain/<config>/encoder.pth.
name = "pretrain_vs_random_synthetic"
dataset = dict(name="synthetic", seed=0, size=64)
tasks = ["segmentation"]
_vit = dict(img_size=64, patch_size=8)
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="mssdf_vit_t16", checkpoint="results/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64/encoder.pth",
         kwargs=_vit),
    dict(name="mae_vit_t16", checkpoint="results/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64/encoder.pth",
         kwargs=_vit),
]  # fmt: skip
modalities = ["rgb", "dsm"]
fractions = [0.01, 0.05, 1.0]
split_seeds = [0]
train_seeds = [0, 1, 2]
budgets = dict(segmentation=dict(max_iters=150, batch_size=8, lr=5e-4, warmup_iters=15))
task_kwargs = dict(segmentation=dict(head_channels=64))
