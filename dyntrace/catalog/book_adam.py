"""Adam as written in Saito's "Deep Learning from Scratch" (ch. 6): ε sits inside the bias correction."""

import math

import torch

from dyntrace.catalog import ConfigError

__all__ = ["BookAdam"]


class BookAdam(torch.optim.Optimizer):
    r"""Adam with the book's placement of ε.

    .. math::
        m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad v_t = β_2 v_{t-1} + (1-β_2) g_t^2,\quad
        θ_t = θ_{t-1} - η \frac{\sqrt{1-β_2^t}}{1-β_1^t}\,\frac{m_t}{\sqrt{v_t} + ε}

    ``torch.optim.Adam`` adds ε to :math:`\sqrt{v_t/(1-β_2^t)}` instead, i.e. its ε is the book's
    divided by :math:`\sqrt{1-β_2^t}`; the two differ only where :math:`\sqrt{v_t}` is near ε.
    On the book's bowl (lr 0.3, 29 steps) torch gives x = 0.020157, this class and the book
    0.020149. The state uses torch's names (``step``, ``exp_avg``, ``exp_avg_sq``) so probes of
    Adam-family state read it unchanged.

    Args:
        params: parameters or parameter groups.
        lr: η (default 1e-3).
        betas: (β₁, β₂) (default (0.9, 0.999)).
        eps: ε added to √v (default 1e-7, the book's value).

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
    Saito, "Deep Learning from Scratch" (2016), ``common/optimizer.py``.
    """

    def __init__(
        self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7
    ):
        if not lr >= 0.0:
            raise ConfigError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ConfigError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"Invalid beta parameter at index {i}: {beta}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient; returns the closure's loss, if any."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"].item()  # a CPU scalar: no device sync
                state["exp_avg"].lerp_(p.grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
                denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
                p.addcdiv_(state["exp_avg"], denom, value=-step_size)
        return loss
