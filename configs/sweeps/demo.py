# The demo behind `make demo`: the whole story on the embedded synthetic benchmark, sized for a
# 2-core laptop CPU (about 20 minutes; see README for the measured time).
#  1. short pretraining of MSSDF, CMID and MAE on the unlabelled pool (the 8-epoch CPU configs on the
#     first 512 pool tiles: 128 iterations each, same data, modalities and schedule shape for all three);
#  2. every backbone (the three pretrained encoders and random init, all ViT-Ti/8 at 64 px) on all five
#     tasks at three label fractions;
#  3. a method x task table, label-efficiency curves and the HTML/Markdown/LaTeX report.
# These budgets show the pipeline, not the papers' numbers: real budgets live in the *_paper presets.
name = "demo"
_pool = {"train_dataloader.dataset.max_samples": 512}
pretrain = [
    dict(name="mssdf", config="configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="cmid", config="configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
    dict(name="mae", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py", cfg_options=_pool),
]
_vit = dict(img_size=64, patch_size=8)
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="mssdf_vit_t16", checkpoint="pretrain:mssdf", kwargs=_vit),
    dict(name="cmid_vit_t16", checkpoint="pretrain:cmid", kwargs=_vit),
    dict(name="mae_vit_t16", checkpoint="pretrain:mae", kwargs=_vit),
]
dataset = dict(name="synthetic", seed=0, size=64)
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
modalities = ["rgb", "dsm"]  # change detection and depth narrow this to RGB (recorded in each row)
fractions = [0.05, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0]
_short = dict(batch_size=8, lr=5e-4, warmup_iters=8)
budgets = dict(
    segmentation=dict(_short, max_iters=80),
    classification=dict(_short, max_iters=80, lr=2e-3),  # linear probe: only the head trains
    detection=dict(_short, max_iters=40),  # the costliest step (RPN + RoI heads): ~0.4 s per iteration
    change_detection=dict(_short, max_iters=40),  # two encoder passes per sample
    depth=dict(_short, max_iters=60),
)
task_kwargs = dict(
    segmentation=dict(head_channels=64),
    detection=dict(neck_channels=64),
    change_detection=dict(head_channels=64),
    depth=dict(head_channels=64),
)
