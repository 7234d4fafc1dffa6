"""CMID-pretrained encoders for downstream tasks: the shared ViT, ResNet-50 and Swin-B students."""

from ..cnn import CNN_PATCH_SIZE, MultiModalResNet, MultiModalSwin
from ..registry import register_backbone
from ..vit import register_vit_backbones

register_vit_backbones("cmid", "{arch} student of CMID pretraining; load with checkpoint=encoder.pth")


@register_backbone("cmid_resnet50", method="cmid", arch="resnet50", img_size=224, patch_size=CNN_PATCH_SIZE)
def cmid_resnet50(modalities=("rgb", "dsm"), **kw) -> MultiModalResNet:
    """ResNet-50 student of CMID; checkpoint=encoder.pth or a converted official release (rsbench convert cmid)."""
    return MultiModalResNet("resnet50", modalities=modalities, **kw)


@register_backbone("cmid_swin_b", method="cmid", arch="swin_b", img_size=224, patch_size=CNN_PATCH_SIZE)
def cmid_swin_b(modalities=("rgb", "dsm"), **kw) -> MultiModalSwin:
    """Swin-B student of CMID; checkpoint=encoder.pth or a converted official release (rsbench convert cmid)."""
    return MultiModalSwin("swin_base_patch4_window7_224", modalities=modalities, **kw)
