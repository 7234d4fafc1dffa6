"""Speed options on CPU: bf16 autocast, gradient checkpointing, channels-last, torch.compile, fused attention;
each changes the cell hash and is recorded in the row."""

import pytest
import torch
from mmengine.config import ConfigDict
from torch.utils.data import Subset

import backbones
from rsbench.registry import MODELS
from tasks import FinetunePlan, TrainBudget, finetune, get_task
from tasks.runtime import AutocastOptimWrapper

pytestmark = pytest.mark.usefixtures("one_thread")


def _vit(**kw):
    return backbones.build("random_init_vit_t16", ("rgb",), img_size=32, patch_size=8, depth=2, **kw)


def test_bf16_autocast_trains_a_cell_and_casts_the_step(data, tmp_path):
    train, test = data
    seen = []
    task = get_task("segmentation", head_channels=16)
    original = task.build_model

    def build_model(backbone, modalities):
        model = original(backbone, modalities)
        model.backbone.vit.blocks[0].mlp.fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        return model

    task.build_model = build_model
    budget = TrainBudget(max_iters=3, batch_size=4, warmup_iters=0, amp="bf16", val_checks=0)
    result = finetune(FinetunePlan(
        task, _vit, Subset(train, range(8)), Subset(test, range(4)), ("rgb",), budget, 0, tmp_path
    ))
    assert all(torch.isfinite(torch.tensor(result.loss_history)))
    assert torch.bfloat16 in seen[:3]  # the training steps ran in bfloat16
    assert seen[-1] == torch.float32  # the test did not
    with pytest.raises(ValueError, match="unknown amp"):
        finetune(FinetunePlan(task, _vit, train, test, ("rgb",), TrainBudget(max_iters=1, amp="fp8"), 0, tmp_path))


def test_autocast_wrapper_is_a_plain_context_on_the_model_device():
    model = torch.nn.Linear(4, 4)
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with wrapper.optim_context(model):
        assert model(torch.rand(2, 4)).dtype == torch.bfloat16


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    a = _vit()
    b = _vit()
    b.load_state_dict(a.state_dict())
    b.set_speed_options(grad_checkpointing=True)
    x = {"rgb": torch.rand(2, 3, 32, 32)}
    for model in (a, b):
        model.train()
        sum(f.sum() for f in model(x)).backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow  # over 2 s on 2 cores; `make test` runs it
def test_channels_last_runs_a_cnn_cell(data, tmp_path):
    train, test = data
    budget = TrainBudget(max_iters=2, batch_size=2, warmup_iters=0, channels_last=True, val_checks=0)

    def resnet():
        return backbones.build("random_init_resnet50", ("rgb",), img_size=32)

    result = finetune(FinetunePlan(
        get_task("segmentation", head_channels=16), resnet, Subset(train, range(4)), Subset(test, range(2)),
        ("rgb",), budget, 0, tmp_path
    ))  # fmt: skip
    assert "mIoU" in result.metrics


def test_fused_attention_matches_the_explicit_path_also_with_padding():
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(type="MSSDF", _scope_="rsbench", arch="vit_t16", img_size=32, patch_size=8,
                                    encoder_kwargs=dict(depth=2), decoder_dim=32, decoder_heads=2, fusion_depth=1,
                                    decoder_depth=1, proj_dim=16)).eval()  # fmt: skip
    x = torch.rand(3, 1, 32, 32)
    mask = torch.rand(3, 16) < 0.6  # different visible counts: padded sequences and a key mask
    assert all(block.attn.fused_attn for block in model.student.vit.blocks)
    fused = model._student_tokens("dsm", x, mask)[0]
    model.student.set_speed_options(fused_attn=False)
    explicit = model._student_tokens("dsm", x, mask)[0]
    torch.testing.assert_close(fused, explicit, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_of_the_backbone_gives_the_same_features():
    torch.manual_seed(0)
    model = _vit().eval()
    x = {"rgb": torch.rand(2, 3, 32, 32)}
    compiled = torch.compile(model)
    for a, b in zip(model(x), compiled(x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_options_are_in_the_hash_and_the_row(tmp_path):
    from benchmark.running.cell_runner import CellRunner
    from benchmark.running.cells import cell_hash, expand_cells
    from benchmark.running.spec import SweepSpec

    def spec(**budget):
        return SweepSpec(name="o", backbones=[dict(name="random_init_vit_t16", checkpoint=None,
                                                   kwargs=dict(img_size=32, patch_size=8, depth=2))],
                         tasks=["segmentation"], dataset=dict(name="synthetic", root=str(tmp_path / "d"), size=32,
                                                             n=8),
                         budgets=dict(segmentation=dict(max_iters=1, batch_size=2, warmup_iters=0, **budget)),
                         task_kwargs=dict(segmentation=dict(head_channels=16)))  # fmt: skip

    plain, fast = spec(), spec(amp="bf16", grad_checkpointing=True)
    assert cell_hash(plain, expand_cells(plain)[0]) != cell_hash(fast, expand_cells(fast)[0])
    rows = CellRunner(fast, tmp_path / "run").run_cell(expand_cells(fast)[0])
    assert rows[0]["status"] == "ok" and rows[0]["train_options"] == "amp=bf16,grad_checkpointing"
    assert TrainBudget().options() == ""
