"""Loss-landscape slices: 1-D lines, 2-D random planes and the trajectory's PCA plane.

Computing (needs torch): ``plane``, ``slice_1d``, ``line``, ``trajectory_plane``,
``random_directions``, ``flatten_params``, ``unflatten``; ``for_run`` stores the slices of a
run recorded in one's own loop in its file. Results (numpy only, usable on the
reading side): ``PlaneResult``, ``LineResult``. Names resolve lazily, so that
``dyntrace.landscape.results`` can be imported without importing torch.

Reference: H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the Loss Landscape
of Neural Nets", NeurIPS 2018.
"""

from importlib import import_module

__all__ = [
    "plane",
    "slice_1d",
    "line",
    "trajectory_plane",
    "random_directions",
    "flatten_params",
    "unflatten",
    "parameter_names",
    "for_run",
    "PlaneResult",
    "LineResult",
]

_LAZY = {
    "plane": "dyntrace.landscape.slices",
    "slice_1d": "dyntrace.landscape.slices",
    "line": "dyntrace.landscape.slices",
    "trajectory_plane": "dyntrace.landscape.trajectory",
    "random_directions": "dyntrace.landscape.directions",
    "flatten_params": "dyntrace.landscape.params",
    "unflatten": "dyntrace.landscape.params",
    "parameter_names": "dyntrace.landscape.params",
    "for_run": "dyntrace.landscape.own_run",  # not a module named for_run: importing it would shadow the function
    "PlaneResult": "dyntrace.landscape.results",
    "LineResult": "dyntrace.landscape.results",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dyntrace.landscape' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
