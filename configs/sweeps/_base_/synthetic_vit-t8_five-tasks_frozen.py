# Shared by the demo (configs/sweeps/demo.py) and the study (configs/sweeps/study_synthetic.py): the four
# pretraining methods with their 8-epoch CPU configs, every backbone as ViT-Ti/8 at 64 px (the four pretrained
# encoders and random init), the five tasks on the synthetic benchmark under the frozen-encoder protocol, and
# the probe budgets. A preset that inherits this names itself and sets its fractions, seeds and budget floors
# (mmengine merges the `budgets` dicts key by key and replaces lists such as `pretrain`).
pretrain = [
    dict(name="mssdf", config="configs/pretrain/mssdf_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="cmid", config="configs/pretrain/cmid_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="mae", config="configs/pretrain/mae_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
    dict(name="supervised", config="configs/pretrain/supervised_vit-t8_rgb-dsm_1xb32-8e_synthetic64.py"),
]
_vit = dict(img_size=64, patch_size=8)
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=_vit),
    dict(name="supervised_vit_t16", checkpoint="pretrain:supervised", kwargs=_vit),
    dict(name="mssdf_vit_t16", checkpoint="pretrain:mssdf", kwargs=_vit),
    dict(name="cmid_vit_t16", checkpoint="pretrain:cmid", kwargs=_vit),
    dict(name="mae_vit_t16", checkpoint="pretrain:mae", kwargs=_vit),
]
dataset = dict(name="synthetic", seed=0, size=64)  # detection: buildings (cars are under the 8-px patch)
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
modalities = ["rgb", "dsm"]  # change detection and depth narrow this to RGB (recorded in each row)
protocols = ["frozen"]
# Probe budgets: epochs with a floor (`min_iters`, set by each preset) and a cap, enough passes over the full
# split for a probe to converge (each row records the best validation iteration); the best of 5 validation
# checks on the subset's own held-out 20 % is what meets the test split, once.
_probe = dict(batch_size=16, lr=1e-2, warmup_iters=10, val_checks=5, epochs=30, max_iters=600)
budgets = dict(
    segmentation=_probe,
    classification=_probe,
    detection=dict(_probe, lr=2e-3, max_iters=250),  # CenterNet's head: a slower step
    change_detection=_probe,
    depth=dict(_probe, lr=3e-3),
)
task_kwargs = dict(detection=dict(neck_channels=32))  # the frozen protocol's detection head width
