"""train lvlm in 2 CPU processes (torchrun, gloo, DeepSpeed ZeRO-2) against 1 process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.test_lvlm import FAST, losses, make_world
from train.lvlm import main

REPO = Path(__file__).resolve().parents[2]
# 8 samples, global batch 4 (1 x 4 or 2 ranks x 2): 2 steps per epoch, the 4 steps cover 2 epochs
COMMON = ["--config", "train/configs/lvlm/instruct_tiny.yaml", "train.max_steps=4", "data.p_inject=0.5",
          "lora.dropout=0", "train.deepspeed=train/configs/deepspeed/zero2.json", *FAST]


def torchrun(nproc: int, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "train.lvlm", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # two torchrun launches of 2 processes each: ~60 s on a loaded 2-core machine
def test_two_processes_zero2_match_one_process_and_resume_only_with_two(tmp_path, capsys):
    world = make_world(tmp_path / "world")
    one = tmp_path / "one"
    assert main([*COMMON, f"data.train_json={world}", f"train.output_dir={one}", "train.batch_size=4"]) == 0

    two = tmp_path / "two"  # packed as well: neither the layout nor the process count changes the losses
    args = [*COMMON, f"data.train_json={world}", f"train.output_dir={two}", "train.batch_size=2", "data.packing=true"]
    first = torchrun(2, [*args, "train.stop_after_steps=2"])
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = two / "checkpoints" / "step_00000002"
    assert json.loads((ckpt / "trainer_state.json").read_text())["extra"]["world_size"] == 2
    # rank 0 writes the run's files once; DeepSpeed adds one ZeRO optimizer shard per rank
    shards = sorted(p.name for p in (ckpt / "deepspeed" / "state").iterdir())
    assert shards == ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
                      "zero_pp_rank_1_mp_rank_00_optim_states.pt"], shards

    # another process count: a clear refusal, nothing written
    assert main([*COMMON, f"data.train_json={world}", f"train.output_dir={two}", "train.batch_size=4"]) == 2
    err = capsys.readouterr().err
    assert "written by 2 process(es) and this run has 1" in err and "Resume with 2 process(es)" in err
    assert (two / "checkpoints" / "latest").read_text().strip() == "step_00000002"

    second = torchrun(2, args)  # the same command resumes
    assert second.returncode == 0, second.stderr[-3000:]
    lines = (two / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]  # one writer: no duplicated lines
    a, b = losses(one), losses(two)
    assert b == pytest.approx(a, abs=1e-5, rel=0)
    assert (two / "final" / "adapter" / "adapter_model.safetensors").is_file()
