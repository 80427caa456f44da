"""Automatic diagnoses of a recorded run: what went wrong (or notably right), where, and how much.

Works on any reader with the ``open_run`` interface (``scalar``, ``names``, ``stat``); each
check needs only the series it reads and is skipped when the run lacks them.
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter

from dyntrace.analysis.curvature import edge_of_stability, noise_scale_of_run, sharpness_of
from dyntrace.analysis.plateaus import find_plateaus
from dyntrace.analysis.smoothing import kaiser_smooth
from dyntrace.errors import MissingDataError

__all__ = ["KINDS", "Diagnosis", "Thresholds", "diagnose", "gradient_flow", "gradient_flow_ratio"]

#: Every ``Diagnosis.kind``, with the meaning of its ``value``.
KINDS = {
    "vanishing_gradients": "smallest gradient-norm ratio first/last layer, or the tiny norm of the layer named",
    "exploding_gradients": "largest ratio first/last layer, or of the global gradient norm to its early median",
    "dead_units": "largest fraction of dead units in the layer",
    "saturation": "largest fraction of saturated outputs in the layer",
    "loss_spike": "largest ratio of the loss to its running median",
    "divergence": "final smoothed loss / its minimum, or the number of non-finite losses",
    "plateau": "the plateau's loss level",
    "overfitting": "relative rise of the validation loss above its minimum",
    "edge_of_stability": "median sharpness / stability threshold once the threshold is reached",
    "batch_size": "batch size in use / gradient noise scale B_simple (late median)",
}

SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Diagnosis:
    """One finding. ``start``/``end`` are the first and last training step it concerns;
    ``severity`` is "info" (notable), "warning" (likely hurts training) or "critical"
    (training is broken); ``value`` is the number behind it (see ``KINDS``); ``subject`` names
    the layer or series concerned."""

    kind: str
    severity: str
    start: int
    end: int
    message: str
    value: float
    subject: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """When each diagnosis fires. Defaults follow common rules of thumb (REFERENCES §3, §6)."""

    vanishing_ratio: float = 1e-3  # first/last layer gradient norm below this
    tiny_grad_norm: float = 1e-10  # or any layer's gradient norm below this
    exploding_ratio: float = 1e3  # first/last layer gradient norm above this
    grad_growth: float = 1e3  # global grad norm above this × its early median
    dead_fraction: float = 0.25  # ≥ this fraction of a layer's units dead
    saturated_fraction: float = 0.5  # ≥ this fraction of a bounded activation's outputs saturated
    spike_window: int = 21  # points in the running median the loss is compared with
    spike_ratio: float = 3.0  # a spike is at least this × the running median …
    spike_sigma: float = 6.0  # … and this many robust stds above it
    divergence_factor: float = 10.0  # smoothed loss ends ≥ this × its minimum (and above its start)
    stuck_fraction: float = 0.9  # an unescaped final plateau at ≥ this × the initial loss is "stuck"
    overfit_rise: float = 0.1  # validation loss ends ≥ this fraction above its minimum
    eos_reach: float = 0.9  # sharpness ≥ this × its stability threshold has reached it …
    eos_band: tuple = (0.8, 1.3)  # … and hovers there if its median ratio stays in this band
    eos_records: int = 3  # over at least this many measurements
    noise_scale_factor: float = 10.0  # batch ≤ B_simple / this, or ≥ this × B_simple


def diagnose(run, *, thresholds=None):
    """Run every check on ``run`` and return the findings sorted by start step → list[Diagnosis].

    Checks: vanishing and exploding gradients (per-layer gradient flow and the global
    ``grad_norm``), dead units (activations' ``frac_dead``), saturation (``frac_saturated``),
    loss spikes and divergence (``loss``), plateaus (``loss``, via ``find_plateaus``),
    overfitting (``val_loss`` against ``loss``), the edge of stability (``curvature/sharpness``
    against its threshold), a batch size far from the gradient noise scale (the
    ``noise_scale`` or ``curvature`` probe). A check whose data the run lacks is skipped.
    """
    th = Thresholds() if thresholds is None else thresholds
    found = []
    checks = (
        _gradient_flow_checks,
        _grad_norm_growth,
        _unit_checks,
        _loss_checks,
        _plateaus,
        _overfitting,
        _edge_of_stability,
        _batch_size,
    )
    for check in checks:
        try:
            found.extend(check(run, th))
        except MissingDataError:
            continue
    return sorted(found, key=lambda d: (d.start, -SEVERITIES.index(d.severity), d.kind))


def gradient_flow(run, *, include_all: bool = False):
    """Gradient norm per layer over the record steps → (steps (R,), layer names (L,), norms (R, L)).

    Parameters are grouped into layers by their module name (``fc1.weight`` and ``fc1.bias``
    → ``fc1``), in recording order (input side first); a layer's norm is √Σ‖g_p‖² over its
    parameters (the norm of its whole gradient). NaN where a layer has no gradient at a step
    (no record, or the parameter got no gradient: an unused branch is not a vanishing one).
    Only parameters the recorded optimizer trains take part unless ``include_all``: frozen
    parameters, sparse ones and those stepped by another optimizer have no gradient flow to
    judge (:meth:`Run.roles`). Raises MissingDataError without gradient records.
    """
    layers = {}
    roles = run.roles("gradients") if hasattr(run, "roles") else {}
    for name in run.names("gradients"):
        if not include_all and roles.get(name, "trainable") != "trainable":
            continue
        steps, norm = run.stat("gradients", name, "norm")
        try:
            _, count = run.stat("gradients", name, "count")
            norm = np.where(np.asarray(count) > 0, norm, np.nan)  # no gradient this record: unknown, not 0
        except MissingDataError:
            pass
        layers.setdefault(name.rpartition(".")[0] or name, []).append((steps, norm))
    if not layers:
        raise MissingDataError(
            "the run has no gradient norms of trained parameters (recorded by the 'gradients' probe)"
        )
    steps = np.unique(np.concatenate([s for series in layers.values() for s, _ in series]))
    norms = np.full((steps.size, len(layers)), np.nan)
    for j, series in enumerate(layers.values()):
        sq = np.zeros(steps.size)
        seen = np.zeros(steps.size, dtype=bool)
        for s, v in series:
            at = np.searchsorted(steps, s)
            v = np.asarray(v, dtype=np.float64)
            known = np.isfinite(v)
            np.add.at(sq, at[known], v[known] ** 2)
            seen[at[known]] = True
        norms[seen, j] = np.sqrt(sq[seen])
    return steps, list(layers), norms


def gradient_flow_ratio(norms):
    """Ratio of the first layer's gradient norm to the last layer's, (R, L) → (R,).

    ≪ 1 means gradients vanish on the way back to the input, ≫ 1 that they explode.
    NaN where the last layer's norm is 0 or missing.
    """
    norms = np.asarray(norms, dtype=np.float64)
    last = norms[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(last > 0, norms[:, 0] / last, np.nan)


def _stretches(mask):
    """(first, last) index of every run of consecutive True values in a 1-D mask."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1))


def _gradient_flow_checks(run, th):
    steps, names, norms = gradient_flow(run)
    ratio = gradient_flow_ratio(norms)
    filled = np.where(np.isnan(norms), np.inf, norms)
    with np.errstate(invalid="ignore"):
        low_ratio = ratio < th.vanishing_ratio
        tiny = (filled.min(axis=1) < th.tiny_grad_norm) & ~low_ratio
        exploding = ratio > th.exploding_ratio
    first, last = names[0], names[-1]
    out = []
    for i, j in _stretches(low_ratio):
        worst = float(ratio[i : j + 1].min())
        out.append(
            Diagnosis(
                "vanishing_gradients",
                "warning",
                int(steps[i]),
                int(steps[j]),
                f"vanishing gradients: the gradient norm of {first} falls to {worst:.2g} × that of {last}",
                worst,
                first,
            )
        )
    for i, j in _stretches(tiny):
        row, col = np.unravel_index(np.argmin(filled[i : j + 1]), (j + 1 - i, len(names)))
        worst = float(filled[i + row, col])
        out.append(
            Diagnosis(
                "vanishing_gradients",
                "warning",
                int(steps[i]),
                int(steps[j]),
                f"vanishing gradients: the gradient norm of {names[col]} is down to {worst:.2g}",
                worst,
                names[col],
            )
        )
    for i, j in _stretches(exploding):
        worst = float(ratio[i : j + 1].max())
        out.append(
            Diagnosis(
                "exploding_gradients",
                "critical",
                int(steps[i]),
                int(steps[j]),
                f"exploding gradients: the gradient norm of {first} reaches {worst:.2g} × that of {last}",
                worst,
                first,
            )
        )
    return out


def _grad_norm_growth(run, th):
    steps, g = run.scalar("grad_norm")
    g = np.asarray(g, dtype=np.float64)
    finite = np.isfinite(g)
    out = []
    if not finite.all():
        bad = np.flatnonzero(~finite)
        out.append(
            Diagnosis(
                "exploding_gradients",
                "critical",
                int(steps[bad[0]]),
                int(steps[-1]),
                f"the global gradient norm is not finite at {bad.size} steps, first at step {steps[bad[0]]}",
                float(bad.size),
                "grad_norm",
            )
        )
    early = g[finite][: max(3, finite.sum() // 20)]
    if early.size == 0:
        return out
    growth = g / np.median(early)
    with np.errstate(invalid="ignore"):
        grown = finite & (growth > th.grad_growth)
    for i, j in _stretches(grown):
        worst = float(growth[i : j + 1].max())
        out.append(
            Diagnosis(
                "exploding_gradients",
                "critical",
                int(steps[i]),
                int(steps[j]),
                f"the global gradient norm grows to {worst:.2g} × its early median",
                worst,
                "grad_norm",
            )
        )
    return out


def _unit_checks(run, th):
    """Dead units and saturation per recorded activation.

    Dead units are read from ``frac_dead_persistent`` (dead for several consecutive records)
    where the run has it, else from ``frac_dead`` (dead on the record step's batch).
    """
    try:
        kinds = run.kinds("activations")
    except MissingDataError:
        kinds = {}
    checks = (
        (("frac_dead_persistent", "frac_dead"), th.dead_fraction, "dead_units", "of the units are dead"),
        (("frac_saturated",), th.saturated_fraction, "saturation", "of the outputs are saturated"),
    )
    out = []
    for layer in run.names("activations"):
        if kinds.get(layer) == "softmax":
            # probabilities near 0 are what a softmax over many items gives (attention over a
            # sequence), and a position zero for every query is padding: neither is a fault
            continue
        label = f"{layer} ({kinds[layer]})" if layer in kinds else layer
        for stats, limit, kind, what in checks:
            series = _first_stat(run, layer, stats)
            if series is None:
                continue
            steps, frac = series
            with np.errstate(invalid="ignore"):
                high = frac >= limit
            for i, j in _stretches(high):
                worst = float(frac[i : j + 1].max())
                out.append(
                    Diagnosis(
                        kind,
                        "warning",
                        int(steps[i]),
                        int(steps[j]),
                        f"in {label}: up to {worst:.0%} {what}",
                        worst,
                        layer,
                    )
                )
    return out


def _first_stat(run, layer, stats):
    """(steps, values) of the first of ``stats`` the run has for an activation, else None."""
    for stat in stats:
        try:
            steps, values = run.stat("activations", layer, stat)
        except MissingDataError:
            continue
        return steps, np.asarray(values, dtype=np.float64)
    return None


def _loss_trend(loss, window):
    """Running median of the loss (non-finite values bridged by interpolation)."""
    finite = np.isfinite(loss)
    idx = np.arange(loss.size)
    bridged = np.interp(idx, idx[finite], loss[finite])
    return median_filter(bridged, size=window, mode="nearest")


def _loss_checks(run, th):
    steps, loss = run.scalar("loss")
    loss = np.asarray(loss, dtype=np.float64)
    finite = np.isfinite(loss)
    out = []
    if not finite.all():
        bad = np.flatnonzero(~finite)
        out.append(
            Diagnosis(
                "divergence",
                "critical",
                int(steps[bad[0]]),
                int(steps[-1]),
                f"the loss is not finite at {bad.size} steps, first at step {steps[bad[0]]}",
                float(bad.size),
                "loss",
            )
        )
    if finite.sum() < 3:
        return out
    trend = _loss_trend(loss, th.spike_window)
    residual = loss - trend
    sigma = 1.4826 * np.median(np.abs(residual[finite]))  # robust std (MAD)
    with np.errstate(invalid="ignore"):
        spike = (
            finite & (residual > (th.spike_ratio - 1) * np.abs(trend)) & (residual > th.spike_sigma * sigma)
        )
    for i, j in _stretches(spike):
        worst = float(np.max(loss[i : j + 1] / trend[i : j + 1]))
        out.append(
            Diagnosis(
                "loss_spike",
                "warning",
                int(steps[i]),
                int(steps[j]),
                f"loss spike: up to {worst:.3g} × its running median",
                worst,
                "loss",
            )
        )
    smooth = kaiser_smooth(trend)
    low = int(np.argmin(smooth))
    ratio = smooth[-1] / smooth[low]
    if smooth[low] > 0 and ratio >= th.divergence_factor and smooth[-1] > smooth[0]:
        out.append(
            Diagnosis(
                "divergence",
                "critical",
                int(steps[low]),
                int(steps[-1]),
                f"the loss diverges: it ends at {ratio:.3g} × its minimum (step {steps[low]}), above where it began",
                float(ratio),
                "loss",
            )
        )
    return out


def _plateaus(run, th):
    steps, loss = run.scalar("loss")
    loss = np.asarray(loss, dtype=np.float64)
    finite = np.isfinite(loss)
    if finite.sum() < 10:
        return []
    steps, loss = steps[finite], loss[finite]
    initial = float(np.median(loss[: max(3, loss.size // 50)]))
    out = []
    for p in find_plateaus(steps, loss):
        if p.escape is not None:
            out.append(
                Diagnosis(
                    "plateau",
                    "info",
                    p.start,
                    p.end,
                    f"plateau at loss {p.level:.3g} from step {p.start} to {p.end}, escaped at step {p.escape}",
                    p.level,
                    "loss",
                )
            )
        elif p.end == steps[-1] and p.level >= th.stuck_fraction * initial:
            out.append(
                Diagnosis(
                    "plateau",
                    "warning",
                    p.start,
                    p.end,
                    f"the loss is stuck at {p.level:.3g} from step {p.start} to the end (it began at {initial:.3g})",
                    p.level,
                    "loss",
                )
            )
    return out


def _overfitting(run, th):
    vsteps, val = run.scalar("val_loss")
    tsteps, train = run.scalar("loss")
    val = np.asarray(val, dtype=np.float64)
    if np.isfinite(val).sum() < 4:
        return []
    sv = kaiser_smooth(val, taps=min(11, 2 * (val.size // 8) + 1))
    low = int(np.nanargmin(sv))
    rise = (sv[-1] - sv[low]) / abs(sv[low])
    st = kaiser_smooth(np.asarray(train, dtype=np.float64))
    at_low, at_end = np.interp([vsteps[low], vsteps[-1]], tsteps, st)
    if rise >= th.overfit_rise and at_end < at_low:
        return [
            Diagnosis(
                "overfitting",
                "warning",
                int(vsteps[low]),
                int(vsteps[-1]),
                f"overfitting: the validation loss rises {rise:.0%} above its minimum at step {vsteps[low]}"
                f" while the training loss keeps falling ({at_low:.3g} → {at_end:.3g})",
                float(rise),
                "val_loss",
            )
        ]
    return []


def _edge_of_stability(run, th):
    """Sharpness (Adam: preconditioned) that reached its stability threshold and stays near it."""
    steps, values, threshold, kind = sharpness_of(run)
    eos = edge_of_stability(steps, values, threshold, reach=th.eos_reach)
    if eos.reached is None:
        return []
    after = int(np.sum(steps >= eos.reached))
    lo, hi = th.eos_band
    if after < th.eos_records or not lo <= eos.hover <= hi:
        return []
    what = (
        "the preconditioned sharpness λ_max(P⁻¹H)" if kind == "preconditioned" else "the sharpness λ_max(H)"
    )
    limit = (
        "(2+2β₁)/((1−β₁)η)"
        if kind == "preconditioned"
        else "its stability threshold (2/η for gradient descent)"
    )
    return [
        Diagnosis(
            "edge_of_stability",
            "info",
            eos.reached,
            int(steps[-1]),
            f"at the edge of stability from step {eos.reached}: {what} hovers at {eos.hover:.2f} × {limit}, "
            f"up from {eos.initial:.2f} × at the start; the loss may fall non-monotonically",
            eos.hover,
            "curvature/precond_sharpness" if kind == "preconditioned" else "curvature/sharpness",
        )
    ]


def _batch_size(run, th):
    """The batch size in use far below or far above the gradient noise scale (late median)."""
    steps, scale, batch = noise_scale_of_run(run)
    late = slice(len(steps) // 2, None)
    b_simple = scale.b_simple[late]
    ok = np.isfinite(b_simple) & (b_simple > 0)
    if ok.sum() < 3:
        return []
    ratio = float(np.median(batch[late][ok] / b_simple[ok]))
    noise = float(np.median(b_simple[ok]))
    used = float(np.median(batch[late][ok]))
    start, end = int(steps[late][ok][0]), int(steps[-1])
    if ratio <= 1.0 / th.noise_scale_factor:
        return [
            Diagnosis(
                "batch_size",
                "info",
                start,
                end,
                f"batch size far below the gradient noise scale: {used:.0f} examples against B_simple ≈ {noise:.3g}; "
                "gradient noise dominates each step, a larger batch would cut the steps nearly in proportion",
                ratio,
                "batch",
            )
        ]
    if ratio >= th.noise_scale_factor:
        return [
            Diagnosis(
                "batch_size",
                "info",
                start,
                end,
                f"batch size far above the gradient noise scale: {used:.0f} examples against B_simple ≈ {noise:.3g}; "
                "each step is nearly noise-free, so extra examples buy little",
                ratio,
                "batch",
            )
        ]
    return []
