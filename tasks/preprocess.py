"""Input normalisation per modality, as an mmengine data preprocessor (runs on the model's device)."""

from __future__ import annotations

import torch
from mmengine.model import BaseDataPreprocessor

from backbones.normalize import normalize_modalities


class ModalityPreprocessor(BaseDataPreprocessor):
    """Moves a batch to the device and normalises each modality (see ``backbones.normalize``).

    ``channels_last`` (set by the engine's speed options) hands 4-D inputs on in NHWC memory format.
    """

    channels_last = False

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = normalize_modalities(data["inputs"])
        if self.channels_last:
            inputs = {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.dim() == 4 else v
                      for k, v in inputs.items()}  # fmt: skip
        return {"inputs": inputs, "data_samples": data.get("data_samples")}
