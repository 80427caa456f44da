"""2-D test functions for optimizer paths: f(x, y) on numpy arrays and on torch tensors alike.

This module never imports torch (plots draw these surfaces without it); on tensors it uses
the tensor's own operations, so autograd works through it.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Function2D", "FUNCTIONS", "bowl", "rosenbrock", "saddle", "plateau", "double_well"]


def _exp(v):
    return v.exp() if hasattr(v, "exp") else np.exp(v)  # torch tensors have .exp(); numpy values do not


@dataclass(frozen=True)
class Function2D:
    """A surface f(x, y) with the metadata a path figure needs.

    Attributes:
        name: catalog name.
        formula: the formula in plain text, for captions.
        f: ``f(x, y)``, elementwise on scalars, numpy arrays or torch tensors.
        start: the usual starting point (x, y).
        minimum: the global minimum (x, y), or None if there is none (saddle).
        xlim, ylim: a plotting window that shows the path.
        note: what the surface demonstrates.
    """

    name: str
    formula: str
    f: Callable
    start: tuple[float, float]
    minimum: tuple[float, float] | None
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    note: str = ""

    def __call__(self, x, y):
        return self.f(x, y)

    @property
    def description(self) -> str:
        return f"f(x, y) = {self.formula}: {self.note}"


bowl = Function2D(
    "bowl",
    "x²/20 + y²",
    lambda x, y: x**2 / 20 + y**2,
    start=(-7.0, 2.0),
    minimum=(0.0, 0.0),
    xlim=(-10.0, 10.0),
    ylim=(-5.0, 5.0),
    note="the anisotropic bowl of Saito's book, ch. 6: SGD zig-zags along y and crawls along x",
)

rosenbrock = Function2D(
    "rosenbrock",
    "(1 − x)² + 100(y − x²)²",
    lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
    start=(-1.5, 2.0),
    minimum=(1.0, 1.0),
    xlim=(-2.0, 2.0),
    ylim=(-1.0, 3.0),
    note="Rosenbrock's banana valley: quick to reach the valley, slow to follow it to (1, 1)",
)

saddle = Function2D(
    "saddle",
    "x² − y²",
    lambda x, y: x**2 - y**2,
    start=(-2.0, 0.01),
    minimum=None,
    xlim=(-2.5, 2.5),
    ylim=(-2.5, 2.5),
    note="a saddle at the origin: from near y = 0 the escape direction's gradient starts tiny",
)

plateau = Function2D(
    "plateau",
    "1 − exp(−(x² + y²)/2)",
    lambda x, y: 1 - _exp(-(x**2 + y**2) / 2),
    start=(-3.0, 2.0),
    minimum=(0.0, 0.0),
    xlim=(-4.0, 4.0),
    ylim=(-3.0, 3.0),
    note="a Gaussian well in a plateau: |∇f| ≈ 5e-3 at the start, so plain SGD barely moves "
    "while momentum and adaptive methods leave the plateau sooner",
)

double_well = Function2D(
    "double_well",
    "x² + (y² − 1)²/4",
    lambda x, y: x**2 + (y**2 - 1) ** 2 / 4,
    start=(-2.0, 0.001),
    minimum=(0.0, 1.0),
    xlim=(-2.5, 2.5),
    ylim=(-1.6, 1.6),
    note="two minima, (0, ±1), and a saddle between them at the origin (f = 1/4, curvature 2 along x, "
    "−1 along y): from near y = 0 the way down to a minimum starts with a tiny gradient",
)

FUNCTIONS = {
    "bowl": bowl,
    "rosenbrock": rosenbrock,
    "saddle": saddle,
    "plateau": plateau,
    "double_well": double_well,
}
