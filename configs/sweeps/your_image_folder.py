# Template: scene classification on your own images, one folder per class (rsdatasets/image_folder.py;
# docs/datasets.md, "Your own data"). The layout of UC Merced, AID, NWPU-RESISC45, PatternNet, EuroSAT:
#
#   ROOT/<class>/<image>             any format Pillow or GDAL reads (png, jpg, tif, multi-band GeoTIFF, ...)
#   ROOT/train.txt, val.txt, test.txt   optional split lists; else ROOT/{train,val,test}/<class>/ split folders;
#                                       else a seeded split stratified by class (recorded in every row)
#
# 1. rsbench data check ROOT --dataset image_folder --dataset-options size=224
# 2. rsbench sweep configs/sweeps/your_image_folder.py --cfg-options dataset.root=ROOT --dry-run
# 3. rsbench sweep configs/sweeps/your_image_folder.py --cfg-options dataset.root=ROOT [--track tensorboard]
#
# Add your pretrained encoders to `backbones` (checkpoint=encoder.pth, or a converted release: docs/checkpoints.md).
# Random init is the floor; an ImageNet-supervised ViT (rsbench convert timm ...) is the positive control.
name = "your_image_folder"
_root = "{{$RSBENCH_DATA_ROOT:data}}/your_image_folder"
_vit = dict(img_size=224, patch_size=16)
backbones = [
    dict(name="random_init_vit_s16", checkpoint=None, kwargs=_vit),
    # dict(name="timm_vit_s16", checkpoint="checkpoints/timm_vit_s16.pth", kwargs=_vit),
    # dict(name="mae_vit_s16", checkpoint="checkpoints/my_mae_encoder.pth", kwargs=_vit),
]
tasks = ["classification"]
# size: every image resized to size x size (needed when sizes differ); bands=4,3,2 scale=10000 for Sentinel-2 tiles.
dataset = dict(name="image_folder", root=_root, size=224)
modalities = ["rgb"]
protocols = ["frozen", "finetune"]  # linear probe on cached features, and full fine-tuning
fractions = [0.01, 0.05, 0.25, 1.0]  # of the training split; val/test never shrink
split_seeds = [0]
train_seeds = [0, 1, 2]
budgets = dict(classification=dict(epochs=30, min_iters=200, max_iters=5000, batch_size=32, lr=1e-3,
                                   warmup_iters=100, val_checks=5, eval_batch_size=64))  # fmt: skip
