"""ski_lvlm.export: adapter / merged exports reload to identical logits; corrupt exports are named; atomic."""

import json
import shutil

import pytest
import torch

from ski_lvlm.export import CorruptExportError, ExportCheckError, ExportError, export_run, probe_logits
from ski_lvlm.models.lvlm import load
from tests.tiny_lvlm import make_run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # every test trains or exports a run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def reference(run):
    model, proc = load(run / "final", merge_adapter=False)  # as it trained: LoRA unmerged
    return probe_logits(model, proc, (0, 1, 7))


def _close(a, b, atol=1e-5):
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) <= atol


def test_lora_export_reloads_to_identical_logits(run, reference, tmp_path):
    out = tmp_path / "export"
    res = export_run(run, out, log=lambda m: None)
    assert res.layout == "adapter" and res.base_copied and res.max_abs_diff <= 1e-5
    for f in ("adapter_config.json", "adapter_model.safetensors", "mm_modules.safetensors", "config.json",
              "processor_config.json", "tokenizer.json", "README.md", "export_info.json", "base_llm/config.json"):
        assert (out / f).is_file(), f
    # self-contained: the backbone reference is the copied folder, relative to the export
    assert json.loads((out / "config.json").read_text())["llm_name_or_path"] == "base_llm"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "base_llm"
    info = json.loads((out / "export_info.json").read_text())
    assert info["reload_check"]["passed"] and info["num_frames"] == 4 and info["frame_sampling"] == "segment_middle"
    # the run folder may disappear: the export still loads (fresh probes, seed 7 was not used by the check)
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)
    model, proc = load(moved)
    assert _close(reference, probe_logits(model, proc, (0, 1, 7)))
    # and the adapter is plain PEFT format
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(moved)).r == 4
    card = (moved / "README.md").read_text()
    assert "base model" in card and "lora" in card and "/data/world/instructions_train.json" in card


def test_merged_export_is_sharded_and_identical(run, reference, tmp_path):
    from ski_lvlm.models.lvlm import SkiLvlmForConditionalGeneration, SkiLvlmProcessor

    out = tmp_path / "merged"
    res = export_run(run / "final", out, merge=True, max_shard_size="150KB", log=lambda m: None)
    assert res.layout == "merged"
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    assert not (out / "adapter_config.json").exists() and not (out / "base_llm").exists()
    # standalone: plain from_pretrained, no backbone reference needed
    model = SkiLvlmForConditionalGeneration.from_pretrained(out).eval()
    assert model.config.llm_name_or_path is None
    assert _close(reference, probe_logits(model, SkiLvlmProcessor.from_pretrained(out), (0, 1, 7)))


def test_bf16_exports_store_bf16_and_pass_the_check(run, tmp_path):
    from safetensors import safe_open

    for merge in (False, True):
        out = tmp_path / f"bf16_{merge}"
        res = export_run(run, out, merge=merge, dtype="bf16", log=lambda m: None)
        assert res.dtype == "bf16" and res.max_abs_diff <= 1e-5
        f = out / ("adapter_model.safetensors" if not merge else sorted(out.glob("model*.safetensors"))[0].name)
        with safe_open(str(f), "pt") as h:
            assert {h.get_tensor(k).dtype for k in h.keys()} == {torch.bfloat16}
        model, _ = load(out, dtype="bf16")
        assert next(model.language_model.parameters()).dtype == torch.bfloat16


def test_corrupted_export_names_the_file(run, tmp_path):
    out = tmp_path / "export"
    export_run(run, out, log=lambda m: None)
    broken = tmp_path / "missing"
    shutil.copytree(out, broken)
    (broken / "adapter_model.safetensors").unlink()
    with pytest.raises(CorruptExportError, match=r"adapter_model\.safetensors: missing"):
        load(broken)
    truncated = tmp_path / "truncated"
    shutil.copytree(out, truncated)
    f = truncated / "mm_modules.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CorruptExportError, match=r"mm_modules\.safetensors: truncated"):
        load(truncated)
    shard = truncated / "base_llm" / "model.safetensors"
    f.write_bytes((out / "mm_modules.safetensors").read_bytes())  # repair, then break the copied backbone
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CorruptExportError, match=r"base_llm/model\.safetensors"):
        load(truncated)


def test_failed_check_or_interruption_leaves_nothing(run, tmp_path):
    out = tmp_path / "export"
    with pytest.raises(ExportCheckError, match="reload check failed"):
        export_run(run, out, atol=-1.0, log=lambda m: None)  # no difference can pass a negative limit
    assert not out.exists() and list(tmp_path.iterdir()) == []

    def interrupt(tmp):
        assert (tmp / "export_info.json").is_file()  # fully written, not yet renamed
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_run(run, out, log=lambda m: None, _before_commit=interrupt)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    export_run(run, out, log=lambda m: None)
    with pytest.raises(ExportError, match="already exists"):
        export_run(run, out, log=lambda m: None)


def test_model_card_lists_latest_eval_numbers(run, tmp_path):
    ev = run / "eval" / "captions"
    ev.mkdir(parents=True, exist_ok=True)
    (ev / "results.json").write_text(json.dumps({"metrics": {"CIDEr": 0.4321, "BLEU-4": 0.1234}, "n": 20}))
    try:
        export_run(run, tmp_path / "e", log=lambda m: None)
    finally:
        shutil.rmtree(run / "eval")
    card = (tmp_path / "e" / "README.md").read_text()
    assert "eval/captions/results.json" in card and "| metrics.CIDEr | 0.4321 |" in card and "| n | 20 |" in card


def test_run_without_adapter_exports_full_model(tmp_path):
    run = make_run(tmp_path / "run", lora=False, seed=1)
    ref_model, proc = load(run / "final", merge_adapter=False)
    res = export_run(run, tmp_path / "e", log=lambda m: None)
    assert res.layout == "merged"
    model, proc2 = load(tmp_path / "e")
    assert _close(probe_logits(ref_model, proc), probe_logits(model, proc2))


def test_the_loader_gives_identical_logits_for_all_three_layouts(run, reference, tmp_path):
    """A run's final/ (full weights + adapter/), the same folder without full weights (a QLoRA /
    save_full=false run) and an adapter export of it: one trained model, so the same logits, merged or not.
    A layout whose LoRA were silently dropped or re-initialised would change them."""
    out = tmp_path / "export"
    export_run(run, out, log=lambda m: None)
    adapter_only = tmp_path / "adapter_only"
    shutil.copytree(run / "final", adapter_only)
    (adapter_only / "model.safetensors").unlink()
    for folder in (run / "final", adapter_only, out):
        for merge in (True, False):
            model, proc = load(folder, merge_adapter=merge)
            assert _close(reference, probe_logits(model, proc, (0, 1, 7))), (folder, merge)


def test_a_dtype_is_applied_after_the_adapter_is_merged(run, tmp_path):
    """``load(dtype=bf16)`` gives the weights of ``load()`` cast to bf16, bit for bit. Merging LoRA into a
    backbone already rounded to bf16 rounds twice, so ``caption --dtype bf16`` (Captioner.from_pretrained)
    and ``eval captions --dtype bf16`` (load as saved, then cast) would generate from different weights."""
    adapter_only = tmp_path / "adapter_only"
    shutil.copytree(run / "final", adapter_only)
    (adapter_only / "model.safetensors").unlink()  # backbone + adapter/, merged on load
    cast = load(adapter_only)[0].to(torch.bfloat16).state_dict()
    direct = load(adapter_only, dtype="bf16")[0].state_dict()
    assert cast.keys() == direct.keys()
    floats = [k for k, v in direct.items() if v.is_floating_point()]
    assert floats and all(direct[k].dtype == torch.bfloat16 for k in floats)
    assert [k for k in cast if not torch.equal(cast[k], direct[k])] == []


def test_the_loader_names_a_folder_of_no_known_layout(run, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a model\n")
    with pytest.raises(FileNotFoundError) as e:
        load(junk)
    msg = str(e.value)
    assert str(junk) in msg and "not a SKI-LVLM model folder" in msg
    assert "final/" in msg and "mm_modules.safetensors" in msg and "export_info.json" in msg  # what it expected
    config_only = tmp_path / "config_only"  # config.json but neither full weights nor mm_modules.safetensors
    config_only.mkdir()
    shutil.copy2(run / "final" / "config.json", config_only / "config.json")
    with pytest.raises(FileNotFoundError, match=r"config_only: not a SKI-LVLM model folder; expected one of"):
        load(config_only)
    with pytest.raises(FileNotFoundError, match=r"not a SKI-LVLM model folder \(a run folder\? its model is"):
        load(run)
