# The demo sweep behind `make demo`: random-init ViT-Ti on the embedded synthetic benchmark,
# semantic segmentation at four label fractions with two training seeds.
# Budget sized for a 2-core laptop CPU (about 5 minutes in all); real budgets live in other configs.
name = "demo"
dataset = dict(name="synthetic", seed=0, size=64)
tasks = ["segmentation"]
backbones = [
    dict(name="random_init_vit_t16", checkpoint=None, kwargs=dict(img_size=64, patch_size=8)),
]
modalities = ["rgb", "dsm"]
fractions = [0.05, 0.1, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0, 1]
budgets = dict(segmentation=dict(max_iters=150, batch_size=8, lr=5e-4, warmup_iters=15))
task_kwargs = dict(segmentation=dict(head_channels=64))
