"""The positive control: the shared ViT trained with labels of the pretraining pool (``model.py``)."""
