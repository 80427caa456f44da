"""The edge of stability: full-batch gradient descent (Cohen et al. 2021) and Adam (Cohen et al. 2022).

A tanh MLP on 500 digits with the square loss, trained on the whole training set at every
step, with the curvature probe measuring the top Hessian eigenvalue every 10 steps.
"""

from __future__ import annotations

import numpy as np

from dyntrace.gallery.base import claim

TITLE = (
    "The edge of stability: sharpness rises to 2/η and hovers there; Adam's preconditioned sharpness at 38/η"
)
CAPTION = """
A tanh MLP (64 → 64 → 64 → 10) on 500 of scikit-learn's 8×8 digits with the square loss
½‖f(x) − onehot(y)‖², trained on the whole training set at every step (full-batch), with the
'curvature' probe measuring the top eigenvalue of the Hessian every 10 steps (power iteration on
Hessian-vector products, warm-started). Top left: under gradient descent at η = 0.1, 0.15 and 0.2
the sharpness λ_max(H) first rises (progressive sharpening), then reaches the threshold 2/η
(dashed, same colour) at which gradient descent on a quadratic of that curvature would diverge,
and hovers at it instead of going past: the larger η, the earlier and the lower (Cohen et al.
2021). Top right: the training loss, which keeps falling at the edge of stability, but no longer
monotonically. Bottom: full-batch Adam (β₁ = 0.9) at η = 0.001 and 0.002: the preconditioned
sharpness λ_max(P⁻¹H), P = (1 − β₁ᵗ)·diag(√v̂ + ε), rises to Adam's threshold
(2 + 2β₁)/((1 − β₁)η) = 38/η and equilibrates there (left; Cohen et al. 2022), while the plain
sharpness λ_max(H) keeps growing (right): Adam advances into sharper regions and adapts its
preconditioner to stay stable.
"""

# -- configuration (saved into each run file) --------------------------------------------------
SEED = 0
N_TRAIN = 500  # digits training examples: the full batch
WIDTH = 64  # two tanh hidden layers
GD_LRS = (0.1, 0.15, 0.2)  # 2/η = 20, 13.3, 10; quick: the last two
ADAM_LRS = (0.001, 0.002)  # 38/η = 38 000, 19 000; quick: the last one
GD_STEPS, ADAM_STEPS = 2000, 1000  # quick: 600, 400
EVERY = 5  # record every 5th step …
MEASURE_EVERY = 2  # … and measure the curvature at every 2nd record: every 10 steps
ITERS, TOL = 20, 1e-3  # power iteration: cap and relative tolerance
REACH = 0.9  # sharpness ≥ 0.9 × threshold counts as having reached it
HOVER_BAND = (0.95, 1.15)  # Cohen et al. 2021: "hovers right at, or just above, 2/η"
LOSS_WINDOW = 50  # steps over which the (oscillating) loss is compared by its lowest value
ADAM_BAND = (0.85, 1.1)  # Cohen et al. 2022: "equilibrates" at 38/η (from below, as theirs)


def _recorder(optimizer: str, lr: float, steps: int):
    def record(path: str) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):
            train(path, optimizer, lr, steps)

    return record


def train(path: str, optimizer: str, lr: float, steps: int) -> None:
    """Full-batch training of the entry's MLP with the curvature probe (also used by the tests)."""
    import torch
    from torch import nn

    import dyntrace
    from dyntrace.catalog.datasets import make_dataset
    from dyntrace.probes import CurvatureProbe

    data = make_dataset("digits", seed=SEED, limit=N_TRAIN)
    x, y = data.X_train, nn.functional.one_hot(data.y_train, data.n_outputs).float()
    torch.manual_seed(SEED)  # the same initial weights for every run
    model = nn.Sequential(
        nn.Linear(x.shape[1], WIDTH),
        nn.Tanh(),
        nn.Linear(WIDTH, WIDTH),
        nn.Tanh(),
        nn.Linear(WIDTH, data.n_outputs),
    )

    def loss_fn(m):
        return 0.5 * ((m(x) - y) ** 2).sum(dim=1).mean()

    opt = (
        torch.optim.SGD(model.parameters(), lr=lr)
        if optimizer == "gd"
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    probe = CurvatureProbe(loss_fn=loss_fn, every=MEASURE_EVERY, iters=ITERS, tol=TOL, trace_samples=0)
    config = {
        "dataset": "digits",
        "n_train": N_TRAIN,
        "model": "mlp",
        "width": WIDTH,
        "depth": 2,
        "activation": "tanh",
        "loss": "square",
        "batch": "full",
        "optimizer": optimizer,
        "lr": lr,
        "steps": steps,
        "seed": SEED,
        "curvature": probe.options(),
    }
    with dyntrace.Recorder(model, opt, path, every=EVERY, probes=[probe], config=config) as rec:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model)
            loss.backward()
            opt.step()
            rec.log(loss=loss.detach())


def runs(quick: bool) -> dict:
    gd_lrs, adam_lrs = (GD_LRS[1:], ADAM_LRS[1:]) if quick else (GD_LRS, ADAM_LRS)
    gd_steps, adam_steps = (600, 400) if quick else (GD_STEPS, ADAM_STEPS)
    out = {f"gd_{lr:g}": _recorder("gd", lr, gd_steps) for lr in gd_lrs}
    out.update({f"adam_{lr:g}": _recorder("adam", lr, adam_steps) for lr in adam_lrs})
    return out


def _label(run) -> str:
    c = run.config
    return f"{'GD' if c['optimizer'] == 'gd' else 'Adam'} η = {c['lr']:g}"


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.plots.compare import plot_compare_loss
    from dyntrace.plots.curvature import plot_sharpness
    from dyntrace.plots.theme import series_color

    gd = [run for key, run in runs.items() if key.startswith("gd_")]
    adam = [run for key, run in runs.items() if key.startswith("adam_")]
    fig = Figure(figsize=(13, 9), layout="constrained")
    (sharp, loss), (pre, raw) = fig.subplots(2, 2)
    for i, run in enumerate(gd):
        plot_sharpness(run, ax=sharp, label=_label(run), color=series_color(i))
    sharp.set_title("Gradient descent: sharpness λ_max(H); dashed: 2/η")
    sharp.set_ylim(0, 1.35 * max(2 / run.config["lr"] for run in gd))
    plot_compare_loss(gd, labels=[_label(r) for r in gd], beta=0.0, ax=loss)
    loss.set_title("Gradient descent: training loss (full batch) at every step")
    for i, run in enumerate(adam):
        color = series_color(len(gd) + i)
        plot_sharpness(run, ax=pre, label=_label(run), color=color)
        plot_sharpness(run, ax=raw, preconditioned=False, label=_label(run), color=color)
    pre.set_title("Adam: preconditioned sharpness λ_max(P⁻¹H); dashed: 38/η")
    pre.set_ylim(0, 1.35 * max(38 / run.config["lr"] for run in adam))
    raw.set_title("Adam: the plain sharpness λ_max(H) rises while λ_max(P⁻¹H) is held")
    raw.set_ylabel("sharpness λ_max(H)")
    return fig


def hover(run, *, preconditioned: bool = False):
    """(EdgeOfStability, steps, loss) of one run: sharpness against its recorded threshold."""
    from dyntrace.analysis import edge_of_stability, sharpness_of

    steps, values, threshold, _ = sharpness_of(run, preconditioned=preconditioned)
    return edge_of_stability(steps, values, threshold, reach=REACH)


def gd_claims(runs: dict) -> list:
    """The gradient-descent claims on a dict label → run (the tests run them on a control too)."""
    out = []
    eos = {_label(r): hover(r) for r in runs.values()}
    initial = {k: e.initial for k, e in eos.items()}
    out.append(
        claim(
            "progressive sharpening: the sharpness starts well below 2/η (sharpness · η/2 at the first step)",
            initial,
            all(v <= 0.8 for v in initial.values()),
            "≤ 0.8 at every η (Cohen et al. 2021: it rises from well below)",
            kind="phenomenon",
        )
    )
    reached = {k: e.reached for k, e in eos.items()}
    out.append(
        claim(
            "the sharpness reaches 2/η (first step at ≥ 0.9 × 2/η)",
            {k: v if v is not None else "never" for k, v in reached.items()},
            all(v is not None for v in reached.values()),
            "every η within the run; the larger η, the earlier",
            kind="phenomenon",
        )
    )
    hovering = {k: e.hover for k, e in eos.items()}
    lo, hi = HOVER_BAND
    out.append(
        claim(
            "once there it hovers at 2/η: median sharpness / (2/η) from then on",
            hovering,
            all(lo <= v <= hi for v in hovering.values()),
            f"{lo}–{hi} at every η (Cohen et al. 2021: 'hovers right at, or just above, 2/η')",
            kind="phenomenon",
        )
    )
    spread = {k: e.hover_spread for k, e in eos.items()}
    out.append(
        claim(
            "and stays there: interquartile range of sharpness / (2/η) from then on",
            spread,
            all(v <= 0.15 for v in spread.values()),
            "≤ 0.15 (no drift past the threshold)",
            kind="phenomenon",
        )
    )
    falls, rises, before = {}, {}, {}
    for run, (key, e) in zip(runs.values(), eos.items()):
        steps, loss = run.scalar("loss")
        if e.reached is None:
            falls[key], rises[key], before[key] = float("nan"), float("nan"), float("nan")
            continue
        at = np.searchsorted(steps, e.reached)
        before[key] = float(np.mean(np.diff(loss[: at + 1]) > 0))
        falls[key] = float(np.min(loss[-LOSS_WINDOW:]) / np.min(loss[at : at + LOSS_WINDOW]))
        rises[key] = float(np.mean(np.diff(loss[at:]) > 0))
    out.append(
        claim(
            "below 2/η the loss falls at every step: share of steps at which it rises before 2/η is reached",
            before,
            all(v <= 0.01 for v in before.values()),
            "≤ 1 % (the descent lemma: a stable rate is monotone)",
            kind="phenomenon",
        )
    )
    out.append(
        claim(
            f"the loss keeps falling at the edge of stability: lowest loss of the last {LOSS_WINDOW} steps / "
            f"of the {LOSS_WINDOW} steps from reaching 2/η",
            falls,
            all(v <= 0.95 for v in falls.values()),
            "≤ 0.95 at every η (spikes go up: the lows fall)",
            kind="phenomenon",
        )
    )
    out.append(
        claim(
            "… but not monotonically: share of steps at which the loss rises, from then on",
            rises,
            all(v >= 0.05 for v in rises.values()),
            "≥ 5 % at every η (at a stable rate full-batch descent never rises)",
            kind="phenomenon",
        )
    )
    return out


def adam_claims(runs: dict) -> list:
    """The Adam claims on a dict label → run (the tests run them on a control too)."""
    from dyntrace.analysis import sharpness_of

    out = []
    eos = {_label(r): hover(r, preconditioned=True) for r in runs.values()}
    lo, hi = ADAM_BAND
    values = {k: e.hover for k, e in eos.items()}
    out.append(
        claim(
            "Adam: λ_max(P⁻¹H) rises to 38/η and equilibrates: its median / (38/η) once reached",
            values,
            all(lo <= v <= hi for v in values.values()),
            f"{lo}–{hi} (Cohen et al. 2022: the preconditioned sharpness equilibrates at (2+2β₁)/((1−β₁)η) = 38/η)",
            kind="phenomenon",
        )
    )
    growth = {}
    for run, (key, e) in zip(runs.values(), eos.items()):
        steps, raw, _, _ = sharpness_of(run, preconditioned=False)
        at = np.searchsorted(steps, e.reached) if e.reached is not None else len(steps) - 1
        growth[key] = float(raw[-1] / raw[at])
    out.append(
        claim(
            "Adam: meanwhile the plain sharpness λ_max(H) keeps growing (final / when 38/η is reached)",
            growth,
            all(v >= 1.5 for v in growth.values()),
            "≥ 1.5 (Cohen et al. 2022: adaptive methods advance into sharper regions)",
            kind="phenomenon",
        )
    )
    return out


def claims(runs):
    from dyntrace.analysis import measurement_cost

    gd = {k: r for k, r in runs.items() if k.startswith("gd_")}
    adam = {k: r for k, r in runs.items() if k.startswith("adam_")}
    out = gd_claims(gd)
    order = sorted(gd.values(), key=lambda r: r.config["lr"])
    when = [hover(r).reached for r in order]
    out.append(
        claim(
            "the larger η, the earlier 2/η is reached (step, by increasing η)",
            [w if w is not None else "never" for w in when],
            None not in when and all(a > b for a, b in zip(when, when[1:])),
            "decreasing",
            kind="phenomenon",
        )
    )
    out += adam_claims(adam)
    thresholds = {}
    for run in gd.values():
        _, t = run.scalar("curvature/threshold")
        thresholds[_label(run)] = float(np.max(np.abs(t * run.config["lr"] / 2 - 1)))
    out.append(
        claim(
            "the recorded threshold is 2/η (largest |threshold · η/2 − 1|)",
            thresholds,
            all(v < 1e-12 for v in thresholds.values()),
            "0",
        )
    )
    cost = {_label(r): measurement_cost(r) for r in runs.values()}
    out.append(
        claim(
            "cost of one curvature measurement, in plain training steps (median)",
            cost,
            all(np.isfinite(v) and v > 0 for v in cost.values()),
            "recorded in the file (forward + backward with a graph, then one Hessian-vector product per iteration)",
        )
    )
    return out
