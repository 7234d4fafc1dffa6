# Shared by every pretraining config: the registered runner, logging, checkpoints and the
# optimiser/schedule *shape* of the papers (AdamW (0.9, 0.95), wd 0.05, linear warm-up for
# 8 % of the epochs (40 of 500), then cosine). Budgets (epochs, batch, lr) live in each config.
default_scope = "rsbench"
runner_type = "PretrainRunner"
launcher = "none"
randomness = dict(seed=0, deterministic=False)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"), dist_cfg=dict(backend="nccl"))
log_level = "INFO"
log_processor = dict(window_size=10, by_epoch=True)
default_hooks = dict(
    runtime_info=dict(type="RuntimeInfoHook"),
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=2, save_last=True),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
optim_wrapper = dict(
    type="OptimWrapper",
    constructor="TrainableOnlyOptimWrapperConstructor",  # the frozen EMA teacher is not optimised
    optimizer=dict(type="AdamW", lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0),
    # no weight decay on norms, biases, tokens and position embeddings (as MAE/BEiT do)
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            "pos_embed": dict(decay_mult=0.0),
            "cls_token": dict(decay_mult=0.0),
            "token": dict(decay_mult=0.0),
        },
    ),
)
