# Template: object detection on your own data with Pascal VOC XML annotations (rsdatasets/voc_detection.py;
# docs/datasets.md, "Your own data"). VOC's layout, DIOR's and DIOR-R's (oriented boxes -> their bounding box):
#
#   ROOT/JPEGImages/<id>.jpg               (DIOR: JPEGImages-trainval/, JPEGImages-test/)
#   ROOT/Annotations/<id>.xml              (DIOR: Annotations/Horizontal Bounding Boxes/ or Oriented Bounding Boxes/)
#   ROOT/ImageSets/Main/{train,val,test}.txt   optional (else a seeded split, recorded in every row)
#   ROOT/classes.json                      optional {"classes": [...]}; else the sorted names found in the XML
#
# 1. rsbench data check ROOT --dataset voc_detection
# 2. rsbench sweep configs/sweeps/your_voc_detection.py --cfg-options dataset.root=ROOT --dry-run
# 3. rsbench sweep configs/sweeps/your_voc_detection.py --cfg-options dataset.root=ROOT [--track tensorboard]
#
# Images of different sizes cannot share a batch: tile them with crop= (e.g. crop=800 overlap=200).
name = "your_voc_detection"
_root = "{{$RSBENCH_DATA_ROOT:data}}/your_voc_detection"
_vit = dict(img_size=800, patch_size=16)
backbones = [
    dict(name="random_init_vit_s16", checkpoint=None, kwargs=_vit),
    # dict(name="timm_vit_s16", checkpoint="checkpoints/timm_vit_s16.pth", kwargs=_vit),
]
tasks = ["detection"]
dataset = dict(name="voc_detection", root=_root)  # crop=800, overlap=200 for large or mixed-size images
modalities = ["rgb"]
protocols = ["finetune"]  # the frozen protocol trains CenterNet's light head: add "frozen" for a probe
fractions = [0.05, 0.25, 1.0]
split_seeds = [0]
train_seeds = [0, 1, 2]
budgets = dict(detection=dict(epochs=24, min_iters=500, max_iters=40000, batch_size=4, lr=1e-4, weight_decay=0.05,
                              warmup_iters=500, val_checks=5, eval_batch_size=4))  # fmt: skip
task_kwargs = dict(detection=dict(neck_channels=256))
