"""The CUDA paths (skipped without a GPU; perf/gpu_check.sh runs them): bf16 autocast, SDPA attention with the
padded MSSDF key mask, a fine-tuning cell on the GPU."""

import pytest
import torch
from mmengine.config import ConfigDict
from torch.utils.data import Subset

import backbones
from rsbench.registry import MODELS
from tasks import FinetunePlan, TrainBudget, finetune, get_task

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_a_bf16_cell_trains_on_the_gpu(data, tmp_path):
    train, test = data
    budget = TrainBudget(max_iters=4, batch_size=4, warmup_iters=0, amp="bf16", val_checks=0)

    def vit():
        return backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=8, depth=2)

    result = finetune(FinetunePlan(
        get_task("segmentation", head_channels=16), vit, Subset(train, range(8)), Subset(test, range(4)), ("rgb",),
        budget, 0, tmp_path
    ))  # fmt: skip
    assert result.device != "cpu" and all(torch.isfinite(torch.tensor(result.loss_history)))


def test_sdpa_with_the_padded_key_mask_matches_the_explicit_path_on_the_gpu():
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(type="MSSDF", _scope_="rsbench", arch="vit_t16", img_size=64, patch_size=8,
                                    encoder_kwargs=dict(depth=2), decoder_dim=32, decoder_heads=2, fusion_depth=1,
                                    decoder_depth=1, proj_dim=16)).cuda().eval()  # fmt: skip
    x = torch.rand(4, 1, 64, 64, device="cuda")
    mask = torch.rand(4, 64, device="cuda") < 0.7
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = model._student_tokens("dsm", x, mask)[0].float()
        model.student.set_speed_options(fused_attn=False)
        explicit = model._student_tokens("dsm", x, mask)[0].float()
    torch.testing.assert_close(fused, explicit, rtol=2e-2, atol=2e-2)  # bf16


def test_mssdf_pretraining_loss_on_the_gpu():
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(type="MSSDF", _scope_="rsbench", arch="vit_t16", img_size=64, patch_size=8,
                                    encoder_kwargs=dict(depth=2), decoder_dim=32, decoder_heads=2, fusion_depth=1,
                                    decoder_depth=1, proj_dim=16)).cuda()  # fmt: skip
    batch = {"rgb": torch.rand(4, 3, 64, 64, device="cuda"), "dsm": torch.rand(4, 1, 64, 64, device="cuda") * 20,
             "dsm_valid": torch.ones(4, 1, 64, 64, dtype=torch.bool, device="cuda")}  # fmt: skip
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses = model.loss(batch)
    total = sum(v for k, v in losses.items() if k.startswith("loss"))
    assert torch.isfinite(total)
    total.backward()
