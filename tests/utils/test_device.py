"""nl2code.utils.device: which autocast dtype each precision setting gives."""

from __future__ import annotations

import warnings

import pytest
import torch

from nl2code.utils import device as dev

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_fast_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: native)
    assert dev.resolve_precision("fast", CPU) == (torch.bfloat16 if native else torch.float32)
    assert dev.resolve_precision("auto", CPU) == torch.float32 and dev.resolve_precision("fp32", CPU) == torch.float32


def test_bf16_is_honoured_on_any_cpu_with_a_warning_where_it_is_slow(monkeypatch):
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="native bf16"):
        assert dev.resolve_precision("bf16", CPU) == torch.bfloat16
    monkeypatch.setattr(dev, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dev.resolve_precision("bf16", CPU) == torch.bfloat16
