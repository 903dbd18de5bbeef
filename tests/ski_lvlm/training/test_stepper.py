import torch

from ski_lvlm.training.stepper import Stepper


def _loss(module, batch):
    return ((module(batch["x"]) - batch["y"]) ** 2).mean()


def test_plain_pytorch_accumulates_steps_at_boundaries_and_epoch_ends():
    torch.manual_seed(0)
    model, ref = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    ref.load_state_dict(model.state_dict())
    batches = [{"x": torch.randn(2, 3), "y": torch.randn(2, 1)} for _ in range(3)]
    opt = torch.optim.SGD([{"params": model.parameters(), "lr_scale": 0.1}], lr=0.0)
    stepper = Stepper(model, opt, lr_at=lambda step: [1.0, 0.5][step], loss_fn=_loss, grad_accum=2, clip_grad=None)
    results = [stepper.step(b, step, last) for b, step, last in zip(batches, (0, 0, 1), (False, False, True))]
    assert [r.boundary for r in results] == [False, True, True]  # the epoch's last micro-batch steps alone
    assert [r.lr_scale for r in results] == [None, 1.0, 0.5]
    # the same updates by hand: mean of two micro-batch gradients at lr 0.1, then one at lr 0.05
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for b in batches[:2]:
        (_loss(ref, b) / 2).backward()
    ref_opt.step()
    ref_opt.zero_grad()
    (_loss(ref, batches[2]) / 2).backward()  # divided by grad_accum even when the epoch ends early
    for g in ref_opt.param_groups:
        g["lr"] = 0.05
    ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_clip_bounds_the_gradient_norm():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD([{"params": model.parameters(), "lr_scale": 0.0}], lr=0.0)  # lr 0: keep the grads' effect out
    seen = []
    opt.step = lambda: seen.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())
    stepper = Stepper(model, opt, lr_at=lambda step: 1.0, loss_fn=_loss, clip_grad=0.01)
    stepper.step({"x": torch.full((1, 2), 100.0), "y": torch.zeros(1, 1)}, 0, False)
    assert seen and abs(seen[0] - 0.01) < 1e-6
