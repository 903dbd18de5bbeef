import os
import random
import signal

import numpy as np
import pytest
import torch

from ski_lvlm.training import checkpoint as ckpt
from ski_lvlm.training.checkpoint import GracefulStop, TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from ski_lvlm.training.schedule import set_lr, warmup_cosine


def _model_and_opt():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    model.config = {"kind": "toy"}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        opt.step()
    return model, opt


def test_roundtrip_restores_weights_optimizer_rng_and_position(tmp_path):
    model, opt = _model_and_opt()
    state = TrainState(epoch=1, step=7, batch_in_epoch=3, extra={"best": 0.5})
    path = save_checkpoint(tmp_path, model=model, optimizer=opt, state=state)
    assert path.name == "step_00000007" and latest_checkpoint(tmp_path) == path
    expect = (random.random(), np.random.rand(), torch.rand(2))

    model2, opt2 = _model_and_opt()
    random.seed(123), np.random.seed(123), torch.manual_seed(123)
    got = load_checkpoint(latest_checkpoint(tmp_path), model=model2, optimizer=opt2)
    assert got == state
    assert (random.random(), np.random.rand()) == expect[:2] and torch.equal(torch.rand(2), expect[2])
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_keep_prunes_and_failed_save_keeps_previous(tmp_path, monkeypatch):
    model, opt = _model_and_opt()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, model=model, optimizer=opt, state=TrainState(step=step), keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_00000002", "step_00000003"]

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, model=model, optimizer=opt, state=TrainState(step=4))
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    assert not list(tmp_path.glob("step_00000004*")) and not list(tmp_path.glob(".step_*"))


def test_strict_load_reports_mismatch(tmp_path):
    model, opt = _model_and_opt()
    save_checkpoint(tmp_path, model=model, optimizer=opt, state=TrainState(step=1))
    with pytest.raises(ValueError, match="does not match"):
        load_checkpoint(latest_checkpoint(tmp_path), model=torch.nn.Linear(4, 2))
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_graceful_stop_turns_sigterm_into_a_flag():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"  # still alive: the loop decides when to stop
    assert signal.getsignal(signal.SIGTERM) is before


def test_warmup_cosine_schedule():
    kw = dict(base_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.01)
    assert warmup_cosine(0, **kw) == 0.0
    assert warmup_cosine(5, **kw) == pytest.approx(0.5)
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)
    assert warmup_cosine(60, **kw) == pytest.approx(0.505)
    assert warmup_cosine(110, **kw) == pytest.approx(0.01) == warmup_cosine(500, **kw)
    lrs = [warmup_cosine(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25


def test_warmup_counting_the_current_step_moves_the_weights_at_step_0():
    """The LVLM convention: warmup reaches base_lr at its last step, and the cosine part is unchanged."""
    kw = dict(base_lr=2.0, total_steps=20, warmup_steps=4, min_lr=0.1)
    assert [warmup_cosine(s, **kw, count_current=True) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert [warmup_cosine(s, **kw, count_current=True) for s in range(4, 21)] == \
        [warmup_cosine(s, **kw) for s in range(4, 21)]
    # per-group peak rates ride in lr_scale: the schedule runs in units of 1
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr_scale": 1e-3}, {"params": [b], "lr_scale": 3e-3}], lr=1.0)
    set_lr(opt, warmup_cosine(0, base_lr=1.0, total_steps=20, warmup_steps=4, count_current=True))
    assert [g["lr"] for g in opt.param_groups] == [0.25 * 1e-3, 0.25 * 3e-3]
