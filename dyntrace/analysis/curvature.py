"""Curvature during training: stability thresholds, the edge of stability, the noise scale.

numpy only. The series come from the ``curvature`` probe (scalars ``curvature/*``: the top
Hessian eigenvalue, its trace, Adam's preconditioned sharpness, the threshold each is held
against) and the ``noise_scale`` probe (squared gradient norms at two batch sizes).

Stability thresholds on a quadratic with curvature λ (Cohen et al. 2021, 2022): gradient
descent with step size η is stable while λ < 2/η; heavy-ball momentum β (torch's SGD,
dampening d) while λ < (2 + 2β)/((1 − d)η); Nesterov while λ < (2 + 2β)/((1 + 2β)η); Adam
(EMA momentum β₁, preconditioner P) while λ_max(P⁻¹H) < (2 + 2β₁)/((1 − β₁)η), 38/η for β₁ = 0.9.
"""

from dataclasses import dataclass

import numpy as np

from dyntrace.analysis.noise import NoiseScale, gradient_noise_scale
from dyntrace.errors import MissingDataError

__all__ = [
    "sgd_threshold",
    "adam_threshold",
    "EdgeOfStability",
    "edge_of_stability",
    "sharpness_of",
    "measurement_cost",
    "NoiseScaleRecord",
    "noise_scale_records",
    "noise_scale_of_run",
]

#: Scalars the curvature probe writes (``run.scalar(name)``).
SHARPNESS, THRESHOLD = "curvature/sharpness", "curvature/threshold"
PRECOND, PRECOND_THRESHOLD = "curvature/precond_sharpness", "curvature/precond_threshold"
TRACE, TRACE_SE = "curvature/trace", "curvature/trace_se"
COST, SECONDS = "curvature/cost", "curvature/seconds"


def _where(run) -> str:
    """The run's file, for messages (any object with the reader's interface will do)."""
    return str(getattr(run, "path", "run"))


def sgd_threshold(lr, momentum=0.0, dampening=0.0, nesterov=False):
    """The largest curvature torch's SGD is stable on: 2/η, (2 + 2β)/((1 − d)η) with momentum β
    and dampening d, (2 + 2β)/((1 + 2β)(1 − d)η) with Nesterov momentum.

    From the iteration on f(x) = λx²/2: its 2 × 2 transition matrix reaches an eigenvalue −1
    at λ = threshold. Works element-wise on arrays of learning rates.
    """
    lr = np.asarray(lr, dtype=np.float64)
    beta, d = float(momentum), float(dampening)
    if not 0.0 <= beta < 1.0 or not 0.0 <= d < 1.0:
        raise ValueError(f"Invalid momentum/dampening: {momentum!r}, {dampening!r} (expected 0 <= value < 1)")
    with np.errstate(divide="ignore"):
        if beta == 0.0:
            return 2.0 / lr
        if nesterov:
            return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * (1.0 - d) * lr)
        return (2.0 + 2.0 * beta) / ((1.0 - d) * lr)


def adam_threshold(lr, beta1=0.9):
    """Adam's threshold for the preconditioned sharpness λ_max(P⁻¹H): (2 + 2β₁)/((1 − β₁)η).

    38/η for β₁ = 0.9 (Cohen et al. 2022, with P = (1 − β₁ᵗ)·diag(√v̂ + ε)).
    """
    lr = np.asarray(lr, dtype=np.float64)
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"Invalid beta1: {beta1!r} (expected 0 <= beta1 < 1)")
    with np.errstate(divide="ignore"):
        return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


@dataclass(frozen=True)
class EdgeOfStability:
    """How a sharpness series sits against its stability threshold.

    ``ratio`` = sharpness / threshold per measurement (N,); ``reached``: the first step at
    which the ratio reaches ``reach`` (None if never); ``hover``: the median ratio from there
    on (NaN if never reached); ``hover_spread``: the interquartile range of the ratio there;
    ``initial``: the ratio at the first measurement.
    """

    steps: np.ndarray
    ratio: np.ndarray
    reached: int | None
    hover: float
    hover_spread: float
    initial: float


def edge_of_stability(steps, sharpness, threshold, *, reach: float = 0.9, settle: int = 0) -> EdgeOfStability:
    """Where a sharpness series reaches its threshold and where it stays, (N,), (N,), (N,) or scalar.

    Cohen et al. (2021): under full-batch gradient descent the sharpness rises (progressive
    sharpening) until it reaches 2/η and then hovers there. ``reach``: the ratio that counts
    as having reached the threshold (default 0.9); ``settle``: measurements skipped after
    reaching it before the hover statistics are taken (default 0). Non-finite values are skipped.
    """
    steps = np.asarray(steps)
    s = np.asarray(sharpness, dtype=np.float64)
    t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), s.shape)
    if s.ndim != 1 or steps.shape != s.shape:
        raise ValueError(
            f"steps and sharpness must be 1-D of the same shape, got {steps.shape} and {s.shape}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = s / t
    finite = np.isfinite(ratio)
    initial = float(ratio[finite][0]) if finite.any() else float("nan")
    above = np.flatnonzero(finite & (ratio >= reach))
    if above.size == 0:
        return EdgeOfStability(steps, ratio, None, float("nan"), float("nan"), initial)
    start = above[0]
    late = ratio[start + settle :]
    late = late[np.isfinite(late)]
    if late.size == 0:
        return EdgeOfStability(steps, ratio, int(steps[start]), float("nan"), float("nan"), initial)
    q1, med, q3 = np.percentile(late, [25, 50, 75])
    return EdgeOfStability(steps, ratio, int(steps[start]), float(med), float(q3 - q1), initial)


def sharpness_of(run, *, preconditioned: bool | None = None):
    """(steps, sharpness, threshold, kind) of a run recorded with the ``curvature`` probe.

    ``kind`` is "preconditioned" (λ_max(P⁻¹H) of an Adam-family run, held against
    (2 + 2β₁)/((1 − β₁)η)) or "hessian" (λ_max(H), held against the SGD threshold); None picks
    the preconditioned series where the run has it. ``threshold`` is NaN where the probe
    recorded none (an optimizer without a known threshold).
    """
    names = set(run.scalar_names)
    if preconditioned is None:
        preconditioned = PRECOND in names
    value, limit = (PRECOND, PRECOND_THRESHOLD) if preconditioned else (SHARPNESS, THRESHOLD)
    if value not in names:
        raise MissingDataError(
            f"{_where(run)}: no scalar {value!r} (recorded by the 'curvature' probe: "
            "Recorder(..., probes=[..., CurvatureProbe(loss_fn=...)])"
        )
    steps, values = run.scalar(value)
    threshold = np.full(values.shape, np.nan)
    if limit in names:
        t_steps, t_values = run.scalar(limit)
        index = np.searchsorted(t_steps, steps)
        hit = (index < t_steps.size) & (t_steps[np.minimum(index, t_steps.size - 1)] == steps)
        threshold[hit] = t_values[index[hit]]
    return (
        steps,
        np.asarray(values, dtype=np.float64),
        threshold,
        "preconditioned" if preconditioned else "hessian",
    )


def measurement_cost(run) -> float:
    """Median cost of one curvature measurement in plain training steps (NaN if never timed)."""
    if COST not in run.scalar_names:
        return float("nan")
    _, cost = run.scalar(COST)
    cost = cost[np.isfinite(cost)]
    return float(np.median(cost)) if cost.size else float("nan")


@dataclass(frozen=True)
class NoiseScaleRecord:
    """Squared gradient norms at two batch sizes per record, as the probes stored them (N,).

    ``sq_small``: |G_small|², the mean-loss gradient of ``b_small`` examples (averaged over
    data-parallel ranks); ``sq_big``: |G_big|² of ``b_big`` examples; ``source``: which probe
    recorded them ("noise_scale" or "curvature"); ``batch``: the batch size the optimizer
    stepped on (``b_big`` for the noise_scale probe, the training batch for the curvature probe).
    """

    steps: np.ndarray
    sq_small: np.ndarray
    sq_big: np.ndarray
    b_small: np.ndarray
    b_big: np.ndarray
    source: str
    batch: np.ndarray


def noise_scale_records(run) -> NoiseScaleRecord:
    """The two-batch-size gradient norms of a run, from the first source it has.

    1. the ``noise_scale`` probe: one micro-batch's gradient against the whole accumulated
       (and data-parallel reduced) batch;
    2. the ``curvature`` probe: the training step's gradient (``curvature/train_grad_sq``)
       against the measurement batch's (``curvature/grad_sq``), the smaller batch first, at the
       same weights. The measurement batch is the same at every record, so its error does not
       average out over records as a fresh batch's would: it serves best when it is much
       larger than the training batch (or the whole training set, whose gradient is G itself
       up to tr Σ / N).
    Raises MissingDataError if neither is there.
    """
    if "noise_scale" in run.probes and run.steps("noise_scale").size:
        fields = {}
        for name in ("sq_small", "sq_big", "b_small", "b_big", "ranks"):
            steps, values = run.field("noise_scale", name)
            fields[name] = np.asarray(values, dtype=np.float64).reshape(len(steps), -1)[:, 0]
        ranks = np.where(fields["ranks"] > 0, fields["ranks"], np.nan)
        return NoiseScaleRecord(
            steps,
            fields["sq_small"] / ranks,
            fields["sq_big"] / ranks,
            fields["b_small"] / ranks,
            fields["b_big"] / ranks,
            "noise_scale",
            fields["b_big"] / ranks,
        )
    names = set(run.scalar_names)
    wanted = (
        "curvature/grad_sq",
        "curvature/train_grad_sq",
        "curvature/batch_size",
        "curvature/train_batch_size",
    )
    if all(n in names for n in wanted):
        series = [run.scalar(n) for n in wanted]
        common = series[0][0]
        for s, _ in series[1:]:
            common = np.intersect1d(common, s)
        meas, train, b_meas, b_train = (
            np.asarray(v, dtype=np.float64)[np.isin(s, common)] for s, v in series
        )
        small_is_train = b_train < b_meas
        return NoiseScaleRecord(
            common,
            np.where(small_is_train, train, meas),
            np.where(small_is_train, meas, train),
            np.where(small_is_train, b_train, b_meas),
            np.where(small_is_train, b_meas, b_train),
            "curvature",
            b_train,
        )
    raise MissingDataError(
        f"{_where(run)}: no gradient norms at two batch sizes (recorded by the 'noise_scale' probe under "
        "gradient accumulation or data parallelism, or by the 'curvature' probe on a batch of another size)"
    )


def noise_scale_of_run(run, *, beta: float = 0.98):
    """(steps, NoiseScale, batch size in use) of a run: B_simple = tr Σ / |G|², EMA-smoothed.

    The per-record unbiased estimates of McCandlish et al. (2018, appendix A) from
    :func:`noise_scale_records`, averaged with a bias-corrected EMA of factor ``beta`` (over
    records, not steps; default 0.98, about the last 50) before dividing
    (:func:`~dyntrace.analysis.gradient_noise_scale`). B_simple is NaN where the averaged |G|²
    estimate is ≤ 0: the gradient is lost in the noise, B_simple beyond what the records resolve.
    The batch size in use is the batch the optimizer stepped on (:class:`NoiseScaleRecord`).
    Records where the two batch sizes coincide are dropped.
    """
    rec = noise_scale_records(run)
    keep = np.isfinite(rec.sq_small) & np.isfinite(rec.sq_big) & (rec.b_big > rec.b_small) & (rec.b_small > 0)
    if not keep.any():
        raise MissingDataError(
            f"{_where(run)}: no record with two different batch sizes for the gradient noise scale"
        )
    scale: NoiseScale = gradient_noise_scale(
        rec.sq_small[keep], rec.sq_big[keep], rec.b_small[keep], rec.b_big[keep], beta=beta
    )
    return rec.steps[keep], scale, rec.batch[keep]
