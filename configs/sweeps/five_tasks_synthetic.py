# Every task once on the synthetic benchmark: one backbone, one fraction, one seed.
# Checks that a backbone runs through all five tasks and how long that takes on 2 cores.
name = "five_tasks_synthetic"
dataset = dict(name="synthetic", seed=0, size=64)
tasks = ["segmentation", "classification", "detection", "change_detection", "depth"]
backbones = [dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=64, patch_size=8))]
modalities = ["rgb", "dsm"]  # change detection and depth narrow this to RGB (recorded in each row)
fractions = [1.0]
split_seeds = [0]
train_seeds = [0]
_budget = dict(max_iters=150, batch_size=8, lr=5e-4, warmup_iters=15)
budgets = {t: _budget for t in tasks}
task_kwargs = dict(
    segmentation=dict(head_channels=64),
    detection=dict(neck_channels=64),
    change_detection=dict(head_channels=64),
    depth=dict(head_channels=64),
)
