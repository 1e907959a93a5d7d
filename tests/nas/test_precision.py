"""nas.precision: what 'auto' means on each device, refusals in one line, the fp16 loss-scaling step."""

from __future__ import annotations

import pytest
import torch

from nas.precision import MixedPrecision, resolve_precision


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """A CUDA device whose native bf16 support the test sets (``state["bf16"]``)."""
    state = {"bf16": True}
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: state["bf16"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    return state


def test_auto_is_fp32_on_cpu_and_explicit_choices_stay() -> None:
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # CPU autocast, when asked for
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_auto_on_cuda_follows_native_bf16(fake_cuda: dict[str, bool]) -> None:
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("fp16", "cuda") == "fp16"
    fake_cuda["bf16"] = False  # a GPU before Ampere
    assert resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(ValueError, match=r"'bf16' needs a GPU with native bf16.*Tesla V100.*fp16 or fp32"):
        resolve_precision("bf16", "cuda")


@pytest.mark.parametrize("precision, match", [("fp16", r"'fp16' needs a CUDA device, but this training runs on cpu"),
                                              ("half", r"TrainConfig.precision must be one of")])
def test_refusals_are_one_line_saying_what_to_do(precision: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        resolve_precision(precision, "cpu")
    assert "--precision" in str(info.value) and "\n" not in str(info.value)


def test_fp16_step_scales_the_loss_and_clips_the_true_gradients() -> None:
    """On CPU (torch's GradScaler runs there too): the step updates like plain SGD on the unscaled,
    clipped gradient, and the scaler's state comes back from a state dict."""
    torch.manual_seed(0)
    plain, scaled = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(8, 4)
    mp = MixedPrecision("fp16", torch.device("cpu"))
    for model, step in ((plain, MixedPrecision("fp32", torch.device("cpu"))), (scaled, mp)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = model(x).pow(2).sum()  # fp32 forward: only the scaling differs (65536: no overflow in fp32)
        step.step(loss, optimizer, list(model.parameters()), grad_clip=0.5)
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    state = mp.state_dict()
    assert state is not None and state["scale"] == 65536.0  # the step was taken: no overflow, no back-off
    again = MixedPrecision("fp16", torch.device("cpu"))
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert MixedPrecision("bf16", torch.device("cpu")).state_dict() is None
