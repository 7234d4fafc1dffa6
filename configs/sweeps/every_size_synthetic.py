# The remaining registered ViT sizes (S/16, B/16, L/16 of every method) through all five tasks at two label
# fractions: with every_backbone_synthetic.py this puts every registered backbone through every task.
# Sizes share their code with the ViT-Ti runs there; this checks that widths, depths and the 16-px patch
# (a BatchNorm'd stride-4 branch in the feature pyramid) work everywhere. A coverage run on 40 tiles with
# 3 iterations per cell, not a comparison.
name = "every_size_synthetic"
_vit = dict(img_size=64, patch_size=16)
backbones = [
    dict(name=name, checkpoint=None, kwargs=_vit)
    for name in [
        "random_init_vit_s16", "random_init_vit_b16", "mssdf_vit_s16", "mssdf_vit_b16", "cmid_vit_s16",
        "cmid_vit_b16", "mae_vit_s16", "mae_vit_b16", "mae_vit_l16", "timm_vit_s16", "timm_vit_b16",
        "timm_vit_l16",
    ]
]  # fmt: skip
dataset = dict(name="synthetic", seed=0, size=64, n=40)  # 40 training and 40 test tiles
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
modalities = ["rgb", "dsm"]
fractions = [0.5, 1.0]
_tiny = dict(max_iters=3, batch_size=4, warmup_iters=1, eval_batch_size=20)
budgets = {t: _tiny for t in tasks}
task_kwargs = dict(
    segmentation=dict(head_channels=32),
    detection=dict(neck_channels=32),
    change_detection=dict(head_channels=32),
    depth=dict(head_channels=32),
)
