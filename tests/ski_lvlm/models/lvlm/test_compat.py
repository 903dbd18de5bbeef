"""LLAVIDAL / Video-ChatGPT compatibility: mm_projector.bin in both directions."""

import pytest
import torch

from ski_lvlm.models.lvlm.compat import load_mm_projector, save_mm_projector

from .conftest import D_S, D_V, make_tiny


def test_load_llavidal_mm_projector_bin(tmp_path):
    model, _ = make_tiny("tiny-llama")
    d = model.config.text_config.hidden_size
    state = {"model.mm_projector.weight": torch.randn(d, D_V), "model.mm_projector.bias": torch.randn(d),
             "model.mm_projector_forpose.weight": torch.randn(d, D_S), "model.mm_projector_forpose.bias": torch.randn(d),
             "model.mm_projector_forobject.weight": torch.randn(d, 512), "model.embed_tokens.weight": torch.randn(10, d)}
    torch.save(state, tmp_path / "mm_projector.bin")
    report = load_mm_projector(model, tmp_path / "mm_projector.bin", require_skeleton=True)
    assert torch.equal(model.video_projector.weight, state["model.mm_projector.weight"])
    assert torch.equal(model.skeleton_projector.bias, state["model.mm_projector_forpose.bias"])
    assert report["ignored"] == ["model.embed_tokens.weight", "model.mm_projector_forobject.weight"]
    # our own export reads back into a fresh model
    save_mm_projector(model, tmp_path / "ours.bin")
    other, _ = make_tiny("tiny-llama")
    load_mm_projector(other, tmp_path / "ours.bin")
    assert torch.equal(other.video_projector.weight, model.video_projector.weight)


def test_video_chatgpt_file_and_mlp_projector(tmp_path):
    model, _ = make_tiny("tiny-llama", projector_type="mlp2x_gelu")
    d = model.config.text_config.hidden_size
    state = {"model.mm_projector.0.weight": torch.randn(d, D_V), "model.mm_projector.0.bias": torch.randn(d),
             "model.mm_projector.2.weight": torch.randn(d, d), "model.mm_projector.2.bias": torch.randn(d)}
    torch.save(state, tmp_path / "vcg.bin")
    report = load_mm_projector(model, tmp_path / "vcg.bin")  # no pose projector in Video-ChatGPT: fine
    assert report["loaded"] == ["video_projector.0.bias", "video_projector.0.weight", "video_projector.2.bias",
                                "video_projector.2.weight"]
    with pytest.raises(ValueError, match="no 'mm_projector_forpose"):
        load_mm_projector(model, tmp_path / "vcg.bin", require_skeleton=True)


def test_shape_mismatch_and_non_weights_files_are_clear_errors(tmp_path):
    model, _ = make_tiny("tiny-llama")
    torch.save({"model.mm_projector.weight": torch.randn(4096, 1024), "model.mm_projector.bias": torch.randn(4096)},
               tmp_path / "7b.bin")
    with pytest.raises(ValueError, match=r"7b.bin: mm_projector .* weight: file has \(4096, 1024\), model expects "
                                         r"\(64, 32\)"):
        load_mm_projector(model, tmp_path / "7b.bin")
    torch.save({"model.mm_projector.weight": torch.randn(64, D_V)}, tmp_path / "partial.bin")
    with pytest.raises(ValueError, match="missing bias"):
        load_mm_projector(model, tmp_path / "partial.bin")

    class Evil:  # a pickle that is not plain tensors must not be executed
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.bin")
    with pytest.raises(ValueError, match="weights-only"):
        load_mm_projector(model, tmp_path / "evil.bin")
    torch.save({"model.embed_tokens.weight": torch.zeros(2)}, tmp_path / "none.bin")
    with pytest.raises(ValueError, match="no 'mm_projector"):
        load_mm_projector(model, tmp_path / "none.bin")
