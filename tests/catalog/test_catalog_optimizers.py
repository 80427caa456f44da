"""Each optimizer's update equals its rule, step by step, on a toy quadratic (float64)."""

import copy
import math

import numpy as np
import pytest
import torch

from dyntrace.catalog import ConfigError
from dyntrace.catalog.book_adam import BookAdam
from dyntrace.catalog.lookahead import Lookahead
from dyntrace.catalog.lr_schedules import make_scheduler
from dyntrace.catalog.optimizers import make_optimizer
from dyntrace.errors import UnknownNameError

A = np.array([1.0, 4.0, 0.25])  # loss Σ ½ a θ² − c θ: gradient a θ − c
C = np.array([0.5, -1.0, 2.0])
THETA0 = np.array([1.0, -2.0, 3.0])
STEPS = 8


def grad(theta):
    return A * theta - C


def torch_path(name, steps=STEPS, **kwargs):
    """θ after each step of the catalog optimizer on the toy loss."""
    theta = torch.nn.Parameter(torch.tensor(THETA0))
    opt = make_optimizer(name, [theta], **kwargs)
    a, c = torch.tensor(A), torch.tensor(C)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * a * theta**2 - c * theta).sum().backward()
        opt.step()
        out.append(theta.detach().numpy().copy())
    return np.array(out)


def rule_path(update, steps=STEPS):
    """θ after each step of ``update(theta, g, t, state) -> theta`` (t from 1)."""
    theta, state, out = THETA0.copy(), {}, []
    for t in range(1, steps + 1):
        theta = update(theta, grad(theta), t, state)
        out.append(theta.copy())
    return np.array(out)


def test_sgd():
    np.testing.assert_allclose(
        torch_path("sgd", lr=0.1), rule_path(lambda th, g, t, s: th - 0.1 * g), rtol=1e-12
    )


def test_momentum_is_the_books_velocity_rule():
    def rule(th, g, t, s):
        s["v"] = 0.9 * s.get("v", 0.0) - 0.1 * g
        return th + s["v"]

    np.testing.assert_allclose(torch_path("momentum", lr=0.1), rule_path(rule), rtol=1e-12)


def test_nesterov_is_bengios_reformulation():
    def rule(th, g, t, s):
        v_old = s.get("v", 0.0)
        s["v"] = 0.9 * v_old - 0.1 * g
        return th + 0.9**2 * v_old - (1 + 0.9) * 0.1 * g

    np.testing.assert_allclose(torch_path("nesterov", lr=0.1), rule_path(rule), rtol=1e-12)
    np.testing.assert_allclose(torch_path("nag", lr=0.1), torch_path("nesterov", lr=0.1))


@pytest.mark.parametrize("book, eps", [(False, 1e-10), (True, 1e-7)])
def test_adagrad(book, eps):
    def rule(th, g, t, s):
        s["h"] = s.get("h", 0.0) + g * g
        return th - 0.5 * g / (np.sqrt(s["h"]) + eps)

    np.testing.assert_allclose(torch_path("adagrad", lr=0.5, book=book), rule_path(rule), rtol=1e-12)


def test_rmsprop():
    def rule(th, g, t, s):
        s["h"] = 0.99 * s.get("h", 0.0) + 0.01 * g * g
        return th - 0.01 * g / (np.sqrt(s["h"]) + 1e-7)

    np.testing.assert_allclose(torch_path("rmsprop", lr=0.01, book=True), rule_path(rule), rtol=1e-12)


def _adam_rule(lr, b1=0.9, b2=0.999, eps=1e-8, decay=0.0, book=False):
    def rule(th, g, t, s):
        th = th * (1 - lr * decay)
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        if book:  # ε on √v, then the bias corrections folded into the rate
            return th - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * s["m"] / (np.sqrt(s["v"]) + eps)
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return th - lr * m_hat / (np.sqrt(v_hat) + eps)

    return rule


def test_adam_with_bias_correction():
    np.testing.assert_allclose(torch_path("adam", lr=0.1), rule_path(_adam_rule(0.1)), rtol=1e-12)


def test_book_adam_puts_eps_before_bias_correction():
    ours = torch_path("adam", lr=0.1, book=True)
    np.testing.assert_allclose(ours, rule_path(_adam_rule(0.1, eps=1e-7, book=True)), rtol=1e-12)
    theta = torch.nn.Parameter(torch.zeros(2))
    assert isinstance(make_optimizer("adam", [theta], lr=0.1, book=True), BookAdam)
    # With ε large enough to matter the two placements differ, and each follows its own rule.
    big = torch_path("adam", lr=0.1, eps=0.5, eps_placement="book")
    np.testing.assert_allclose(big, rule_path(_adam_rule(0.1, eps=0.5, book=True)), rtol=1e-12)
    assert not np.allclose(big, torch_path("adam", lr=0.1, eps=0.5))


def test_adamw_decays_before_the_adam_step():
    np.testing.assert_allclose(
        torch_path("adamw", lr=0.1, weight_decay=0.1), rule_path(_adam_rule(0.1, decay=0.1)), rtol=1e-12
    )


def _radam_r(t, b2=0.999):
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    r = (
        math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        if rho_t > 5
        else None
    )
    return rho_t, r


def test_radam_rectifies_from_step_six():
    assert _radam_r(5)[1] is None and _radam_r(6)[1] == pytest.approx(0.0258, abs=5e-5)
    assert _radam_r(10)[1] == pytest.approx(0.0490, abs=5e-5)

    def rule(th, g, t, s, lr=0.1, b1=0.9, b2=0.999, eps=1e-8):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        m_hat = s["m"] / (1 - b1**t)
        _, r = _radam_r(t)
        if r is None:  # not rectified: momentum SGD with the bias-corrected mean
            return th - lr * m_hat
        return th - lr * r * m_hat * math.sqrt(1 - b2**t) / (np.sqrt(s["v"]) + eps)  # torch: ε on √v

    np.testing.assert_allclose(torch_path("radam", lr=0.1, steps=10), rule_path(rule, steps=10), rtol=1e-10)


def test_lookahead_syncs_after_every_kth_inner_step():
    k, alpha, lr = 3, 0.5, 0.1

    def rule(th, g, t, s):
        slow = s.setdefault("slow", th.copy())
        th = th - lr * g
        if t % k == 0:
            s["slow"] = slow + alpha * (th - slow)
            th = s["slow"].copy()
        return th

    ours = torch_path("lookahead", lr=lr, inner="sgd", k=k, alpha=alpha, steps=9)
    np.testing.assert_allclose(ours, rule_path(rule, steps=9), rtol=1e-12)


def _lookahead(k=3, lr=0.1, inner="momentum"):
    theta = torch.nn.Parameter(torch.tensor(THETA0))
    return theta, make_optimizer("lookahead", [theta], lr=lr, inner=inner, k=k)


def _train(theta, opt, steps, scheduler=None):
    for _ in range(steps):
        opt.zero_grad()
        (theta**2).sum().backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def test_lookahead_synced_flag_and_step_hooks():
    theta, opt = _lookahead(k=3)
    calls, synced = [], []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    handle = opt.register_step_post_hook(
        lambda o, args, kwargs: (calls.append("post"), synced.append(o.synced))
    )
    assert opt.synced is False
    _train(theta, opt, 6)
    assert calls == ["pre", "post"] * 6
    assert synced == [False, False, True, False, False, True]
    handle.remove()
    _train(theta, opt, 1)
    assert calls.count("post") == 6


def test_lookahead_shares_param_groups_with_the_scheduler():
    theta, opt = _lookahead()
    assert opt.param_groups is opt.optimizer.param_groups
    scheduler = make_scheduler("step", opt, step_size=2, gamma=0.5)
    _train(theta, opt, 4, scheduler)
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.25)


def test_lookahead_state_dict_round_trip():
    theta, opt = _lookahead(k=3)
    _train(theta, opt, 4)  # mid-cycle: slow weights and momentum both matter
    saved_theta, saved = theta.detach().clone(), copy.deepcopy(opt.state_dict())
    assert saved["inner_steps"] == 4 and "inner" in saved
    _train(theta, opt, 5)
    expected = theta.detach().clone()

    theta2, opt2 = _lookahead(k=3)
    with torch.no_grad():
        theta2.copy_(saved_theta)
    opt2.load_state_dict(saved)
    assert opt2.param_groups is opt2.optimizer.param_groups
    _train(theta2, opt2, 5)
    torch.testing.assert_close(theta2.detach(), expected, rtol=0, atol=0)


def test_lookahead_slow_weights_context_swaps_and_restores():
    theta, opt = _lookahead(k=3)
    with opt.slow_weights():  # no slow weights before the first step: unchanged
        torch.testing.assert_close(theta.detach(), torch.tensor(THETA0))
    _train(theta, opt, 4)
    fast = theta.detach().clone()
    slow = opt.state[theta]["slow_param"].clone()
    assert not torch.equal(fast, slow)
    with opt.slow_weights():
        assert torch.equal(theta.detach(), slow)
    assert torch.equal(theta.detach(), fast)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "Invalid k"),
        ({"k": 2.5}, "Invalid k"),
        ({"alpha": 0.0}, "Invalid alpha"),
        ({"alpha": 1.5}, "Invalid alpha"),
    ],
)
def test_lookahead_validates_up_front(kwargs, message):
    theta = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ConfigError, match=message):
        Lookahead(torch.optim.SGD([theta], lr=0.1), **kwargs)


def test_unknown_optimizer_suggests_a_name():
    with pytest.raises(UnknownNameError) as info:
        make_optimizer("adm", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    message = str(info.value)
    assert message.startswith("unknown optimizer 'adm'; did you mean 'adam'? valid: adagrad, adam,")
    assert "\n" not in message


def test_names_are_case_and_dash_insensitive():
    theta = torch.nn.Parameter(torch.zeros(1))
    assert isinstance(make_optimizer("RMSProp", [theta], lr=0.1), torch.optim.RMSprop)
    assert isinstance(make_optimizer("AdamW", [theta], lr=0.1), torch.optim.AdamW)
