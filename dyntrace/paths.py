"""Optimizer paths on 2-D test functions: train two numbers, not a network.

    >>> xy = optimizer_path("bowl", "sgd", lr=0.95)            # (31, 2) numpy array
    >>> xy = optimizer_path("bowl", "adam", lr=0.3, book=True, path="adam.h5")

The point (x, y) is a float64 parameter of a tiny module, so any catalog optimizer (and a
Recorder) runs on it unchanged. With ``book=True`` the optimizers follow Saito's book exactly
(AdaGrad/RMSprop ε = 1e-7, Adam's ε before bias correction); see
:data:`dyntrace.catalog.optimizers.BOOK_OPTIONS`.
"""

import numpy as np
import torch
from torch import nn

from dyntrace.catalog import lookup
from dyntrace.catalog.functions2d import FUNCTIONS, Function2D
from dyntrace.catalog.optimizers import make_optimizer

__all__ = ["Point", "optimizer_path"]


class Point(nn.Module):
    """A module whose only parameter ``xy`` is a point (x, y) (float64); forward returns f(x, y)."""

    def __init__(self, function: Function2D, start):
        super().__init__()
        self.function = function
        self.xy = nn.Parameter(torch.tensor(start, dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        return self.function(self.xy[0], self.xy[1])


def optimizer_path(
    function,
    optimizer_name: str,
    *,
    lr: float,
    steps: int = 30,
    start=None,
    path=None,
    probes=("scalars", "gradients", "weights"),
    **options,
) -> np.ndarray:
    """Run ``steps`` updates of the named optimizer on a 2-D function; return the path.

    Args:
        function: a :class:`~dyntrace.catalog.functions2d.Function2D` or its catalog name.
        optimizer_name: a catalog optimizer name (``options`` go to ``make_optimizer``, e.g.
            ``book=True``, ``momentum=0.5``).
        lr: learning rate.
        steps: number of optimizer steps (default 30).
        start: starting point (x, y) (default: the function's ``start``).
        path: if given, record the run to this file with :class:`dyntrace.Recorder` (every step);
            scalars ``x``, ``y``, ``loss`` at step t are those of the point after t updates,
            t = 0 … steps, and the config holds every argument.
        probes: the Recorder's probes when ``path`` is given (a point has no activations).

    Returns:
        float64 array (steps + 1, 2): row t is (x, y) after t updates (row 0 the start).
    """
    function = lookup("function", FUNCTIONS, function) if isinstance(function, str) else function
    start = tuple(float(v) for v in (function.start if start is None else start))
    point = Point(function, start)
    optimizer = make_optimizer(optimizer_name, point.parameters(), lr=lr, **options)
    rec = None
    if path is not None:
        import dyntrace  # the recording side, only when a file is wanted

        config = {
            "function": function.name,
            "optimizer": optimizer_name,
            "lr": lr,
            "steps": steps,
            "start": list(start),
            **options,
        }
        rec = dyntrace.Recorder(point, optimizer, path, every=1, probes=list(probes), config=config)
    trail = [point.xy.detach().clone()]
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = point()
            _log(rec, point, loss)  # at step t: the point after t updates, where the gradient is taken
            loss.backward()
            optimizer.step()
            trail.append(point.xy.detach().clone())
        with torch.no_grad():
            _log(rec, point, point())
    finally:
        if rec is not None:
            rec.close()
    return torch.stack(trail).numpy()


def _log(rec, point: Point, loss: torch.Tensor) -> None:
    if rec is not None:
        xy = point.xy.detach()
        rec.log(x=xy[0].clone(), y=xy[1].clone(), loss=loss.detach())
