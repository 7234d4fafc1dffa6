"""MAE (He et al. 2022) on the project's shared ViT encoder."""
