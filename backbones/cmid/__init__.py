"""CMID: contrastive mask image distillation (MIM + global MoCo + local DINO branches, EMA teacher)."""
