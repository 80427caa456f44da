"""Probes, by name. A new probe is one module plus one line in ``PROBES``."""

from __future__ import annotations

from dyntrace.errors import UnknownNameError
from dyntrace.probes.activations import ActivationsProbe
from dyntrace.probes.adaptive import AdaptiveProbe
from dyntrace.probes.base import Probe, RecordContext
from dyntrace.probes.curvature import CurvatureProbe
from dyntrace.probes.gradients import GradientsProbe
from dyntrace.probes.noise_scale import NoiseScaleProbe
from dyntrace.probes.scalars import ScalarsProbe
from dyntrace.probes.steps import StepsProbe
from dyntrace.probes.weights import WeightsProbe

__all__ = ["Probe", "RecordContext", "PROBES", "DEFAULT_PROBES", "make_probes"]

PROBES: dict[str, type[Probe]] = {
    "scalars": ScalarsProbe,
    "activations": ActivationsProbe,
    "gradients": GradientsProbe,
    "weights": WeightsProbe,
    "steps": StepsProbe,
    "adaptive": AdaptiveProbe,
    "noise_scale": NoiseScaleProbe,
    "curvature": CurvatureProbe,
}

DEFAULT_PROBES = ("scalars", "activations", "gradients", "weights")


def make_probes(spec=None) -> list[Probe]:
    """Probe objects from None (the default set), "all", or a list of names and/or probes.

    "all" leaves out the probes that cannot be made by name alone (``in_all = False``: the
    curvature probe needs a loss).
    """
    if spec is None:
        spec = DEFAULT_PROBES
    elif spec == "all":
        spec = tuple(name for name, cls in PROBES.items() if getattr(cls, "in_all", True))
    elif isinstance(spec, (str, Probe)):
        spec = [spec]
    probes = []
    for item in spec:
        if isinstance(item, Probe):
            probes.append(item)
        elif isinstance(item, str) and item in PROBES:
            probes.append(PROBES[item]())
        else:
            import difflib

            close = difflib.get_close_matches(str(item), PROBES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"unknown probe {item!r}{hint} valid: {', '.join(PROBES)}, or 'all'")
    names = [p.name for p in probes]
    if len(set(names)) != len(names):
        raise ValueError(f"probes given twice: {names}")
    return probes
