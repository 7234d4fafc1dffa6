"""Input normalisation per modality, as an mmengine data preprocessor (runs on the model's device)."""

from __future__ import annotations

from mmengine.model import BaseDataPreprocessor

from backbones.normalize import normalize_modalities


class ModalityPreprocessor(BaseDataPreprocessor):
    """Moves a batch to the device and normalises each modality (see ``backbones.normalize``)."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        return {"inputs": normalize_modalities(data["inputs"]), "data_samples": data.get("data_samples")}
