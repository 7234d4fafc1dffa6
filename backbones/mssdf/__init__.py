"""MSSDF: modality-shared self-supervised distillation."""
