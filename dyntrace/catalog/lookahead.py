"""Lookahead: slow weights that follow k steps of any inner optimizer (torch has none built in)."""

from contextlib import contextmanager

import torch

from dyntrace.catalog import ConfigError

__all__ = ["Lookahead"]


class Lookahead(torch.optim.Optimizer):
    r"""Wrap ``optimizer`` (the fast weights θ) with slow weights φ.

    Every step is one step of the inner optimizer; after every k-th step the two sync:

    .. math::
        φ \leftarrow φ + α(θ - φ), \qquad θ \leftarrow φ

    φ starts as θ at the first step. The wrapper shares ``param_groups`` with the inner optimizer,
    so learning-rate schedulers built on either one change the rate the inner optimizer uses.
    Step pre/post hooks registered on the wrapper fire once per :meth:`step` (this class is a
    :class:`torch.optim.Optimizer`, whose ``__init__`` installs them); hooks on the inner
    optimizer fire on its own step inside it, and global optimizer hooks fire for both.

    Attributes:
        optimizer: the inner optimizer; its state (e.g. Adam's ``exp_avg_sq``) is
            ``self.optimizer.state``, while ``self.state[p]["slow_param"]`` holds φ.
        k, alpha: the sync period and the slow step size.
        synced: True when the last step ended with a sync (θ = φ).

    Args:
        optimizer: any torch optimizer.
        k: inner steps per sync (default 5).
        alpha: slow-weight step size α in (0, 1] (default 0.5; the authors' code uses 0.8).

    Reference: Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back",
    NeurIPS 2019.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, k: int = 5, alpha: float = 0.5):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"Invalid k: {k!r} (an integer >= 1)")
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"Invalid alpha: {alpha!r} (in (0, 1])")
        self.optimizer = optimizer
        self.k = k
        self.alpha = float(alpha)
        self._inner_steps = 0
        super().__init__(optimizer.param_groups, {})
        self.param_groups = optimizer.param_groups  # the same list: schedulers see one set of groups

    @property
    def synced(self) -> bool:
        """True when the last step ended with a sync (θ = φ): after every k-th step."""
        return self._inner_steps > 0 and self._inner_steps % self.k == 0

    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the inner optimizer (with its defaults); the wrapper shares its groups."""
        if any(group is param_group for group in self.optimizer.param_groups):
            return  # Optimizer.__init__ passes the inner optimizer's own groups through here
        self.optimizer.add_param_group(param_group)

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        """One inner step, then the sync if this was the k-th; returns the closure's loss, if any."""
        for p in self._params():
            if "slow_param" not in self.state[p]:
                self.state[p]["slow_param"] = p.detach().clone()
        loss = self.optimizer.step(closure)  # the inner step evaluates the closure with grad enabled
        self._inner_steps += 1
        if self.synced:
            for p in self._params():
                slow = self.state[p]["slow_param"]
                slow.lerp_(p, self.alpha)
                p.copy_(slow)
        return loss

    @contextmanager
    def slow_weights(self):
        """Swap φ into the parameters (e.g. to evaluate) and restore θ on exit.

        Before the first step there is no φ yet and the parameters are left as they are.
        """
        swapped = [(p, p.detach().clone()) for p in self._params() if "slow_param" in self.state[p]]
        with torch.no_grad():
            for p, _ in swapped:
                p.copy_(self.state[p]["slow_param"])
        try:
            yield self
        finally:
            with torch.no_grad():
                for p, fast in swapped:
                    p.copy_(fast)

    def state_dict(self) -> dict:
        """φ and the parameter groups (torch's layout), plus ``inner`` state and ``inner_steps``."""
        state = super().state_dict()
        state["inner"] = self.optimizer.state_dict()
        state["inner_steps"] = self._inner_steps
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned: inner state, φ and the step counter."""
        state_dict = dict(state_dict)
        self.optimizer.load_state_dict(state_dict.pop("inner"))
        self._inner_steps = int(state_dict.pop("inner_steps"))
        super().load_state_dict(state_dict)
        # Both loads rebuilt their group lists from the saved values: share the inner one again.
        self.param_groups = self.optimizer.param_groups

    def __getstate__(self) -> dict:
        return {
            **super().__getstate__(),
            "optimizer": self.optimizer,
            "k": self.k,
            "alpha": self.alpha,
            "_inner_steps": self._inner_steps,
        }

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"
