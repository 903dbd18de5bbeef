"""ski_lvlm.utils.runtime: which precision a training setting resolves to on which hardware."""

import pytest
import torch

from ski_lvlm.utils import runtime
from ski_lvlm.utils.runtime import native_bf16, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_is_bf16_on_cuda_and_fp32_on_any_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    assert resolve_precision("auto", CUDA) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"  # CPU runs stay exact unless asked otherwise


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_bf16_native_follows_the_hardware_on_cpu(monkeypatch, native, want):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: native)
    assert resolve_precision("bf16_native", CPU) == want


def test_explicit_precisions_are_kept_and_unknown_ones_named():
    assert resolve_precision("fp32", CUDA) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="precision='fp8'"):
        resolve_precision("fp8", CPU)


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    assert native_bf16(CUDA) is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert native_bf16(CPU) is True
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert native_bf16(CPU) is False
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probes: fp32, no crash
    assert native_bf16(CPU) is False


def test_a_missing_cuda_device_is_an_input_error_and_still_a_runtime_error(monkeypatch):
    from ski_lvlm.utils.errors import SkiLvlmError
    from ski_lvlm.utils.runtime import DeviceError, pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="device=cuda requested but no CUDA device") as e:
        pick_device("cuda")
    assert isinstance(e.value, SkiLvlmError) and isinstance(e.value, RuntimeError)  # cli_entry reports it
    assert pick_device("auto") == CPU
