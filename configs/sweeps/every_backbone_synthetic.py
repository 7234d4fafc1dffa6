# Every pretraining method on every encoder family through all five tasks at two label fractions: a
# coverage run (does each registered backbone train and evaluate everywhere?), not a comparison.
# ViT-Ti/8 for the ViT methods (vit_s/b/l share their code), ResNet-50 and Swin-B as CMID released them;
# the CMID ResNet-50 is pretrained briefly first (its 2-epoch config on 256 pool tiles) so a real exported
# CNN encoder goes through every task; the other methods' ViTs start from their own init here (their
# pretraining is exercised by `make demo`). Tiny budgets: about 15 minutes on 2 cores.
name = "every_backbone_synthetic"
pretrain = [
    dict(name="cmid_resnet50", config="configs/pretrain/cmid_resnet50_rgb-dsm_1xb32-2e_synthetic64.py",
         cfg_options={"train_dataloader.dataset.max_samples": 256}),
]  # fmt: skip
_vit = dict(img_size=64, patch_size=8)
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="mssdf_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="cmid_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="mae_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="timm_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="random_init_resnet50", checkpoint=None),
    dict(name="cmid_resnet50", checkpoint="pretrain:cmid_resnet50"),
    dict(name="random_init_swin_b", checkpoint=None),
    dict(name="cmid_swin_b", checkpoint=None),
]
dataset = dict(name="synthetic", seed=0, size=64)
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
modalities = ["rgb", "dsm"]
fractions = [0.1, 1.0]
_tiny = dict(max_iters=10, batch_size=4, warmup_iters=2, eval_batch_size=16)
budgets = {t: _tiny for t in tasks}
task_kwargs = dict(
    segmentation=dict(head_channels=32),
    detection=dict(neck_channels=32),
    change_detection=dict(head_channels=32),
    depth=dict(head_channels=32),
)
