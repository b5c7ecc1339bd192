"""Our Adafactor (free_train/adafactor.py) makes the updates transformers' Adafactor makes with
the line's options, to float rounding, and takes over its saved state: the trunk committed
before it carries transformers' state."""
import copy

import pytest
import torch
from transformers.optimization import Adafactor as HFAdafactor

from free_train.adafactor import Adafactor


def model_and_groups(seed: int):
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 24), torch.nn.LayerNorm(24),
                            torch.nn.Linear(24, 50))
    ps = dict(m.named_parameters())
    groups = [{"params": [ps["0.weight"]], "weight_decay": 0.01, "lr_scale": 0.5},
              {"params": [ps["1.weight"], ps["3.weight"]], "weight_decay": 0.01, "lr_scale": 1.0},
              {"params": [ps["1.bias"], ps["2.weight"], ps["2.bias"], ps["3.bias"]], "weight_decay": 0.0,
               "lr_scale": 1.0}]
    return m, groups


def train(m, opt, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, 50, (8, 5), generator=g)
        loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, 50), x.roll(1, 1).reshape(-1))
        opt.zero_grad()
        loss.backward()
        for grp in opt.param_groups:
            grp["lr"] = 1e-2 * grp["lr_scale"]
        opt.step()


@pytest.mark.parametrize("scale_parameter", [True, False])
def test_updates_equal_transformers_adafactor(scale_parameter):
    ours, groups = model_and_groups(3)
    opt = Adafactor(groups, lr=1e-2, scale_parameter=scale_parameter)
    theirs, hgroups = model_and_groups(3)
    hopt = HFAdafactor(hgroups, lr=1e-2, scale_parameter=scale_parameter, relative_step=False, warmup_init=False)
    train(ours, opt, 6)
    train(theirs, hopt, 6)
    moved = 0.0
    start, _ = model_and_groups(3)
    for (n, a), b, s in zip(ours.named_parameters(), theirs.parameters(), start.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=n)
        moved = max(moved, float((a - s).abs().max().detach()))
    assert moved > 1e-3  # the steps did move the weights


def test_takes_over_transformers_state():
    """Six steps of transformers' Adafactor, then its state_dict loaded into ours for six more,
    equal twelve steps of transformers' alone."""
    a, ga = model_and_groups(5)
    hopt = HFAdafactor(ga, lr=1e-2, relative_step=False, warmup_init=False)
    train(a, hopt, 6)
    b, gb = model_and_groups(5)
    b.load_state_dict(a.state_dict())
    opt = Adafactor(gb, lr=1e-2)
    opt.load_state_dict(copy.deepcopy(hopt.state_dict()))  # a state_dict shares the live tensors
    train(a, hopt, 6, seed=1)
    train(b, opt, 6, seed=1)
    for (n, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-7, msg=n)
    assert opt.state[next(b.parameters())]["step"] == 12


def test_refuses_what_it_does_not_run():
    m, groups = model_and_groups(1)
    with pytest.raises(ValueError, match="positive rate"):
        Adafactor(groups, lr=0.0)
    opt = Adafactor(groups, lr=1e-2)
    opt.param_groups[0]["beta1"] = 0.9
    m(torch.zeros(1, 2, dtype=torch.long)).sum().backward()
    with pytest.raises(ValueError, match="first moment"):
        opt.step()
