"""Saddle points vs minima (seed 001: "지역해 ... plateaus", seed 004: local minima): where the
gradient is zero, a minimum holds a point, a saddle does not — but leaving it starts slowly.

The surface is the catalog's ``double_well`` f(x, y) = x² + (y² − 1)²/4: minima at (0, ±1), a saddle
at (0, 0) with curvature 2 along x and −1 along y. It is separable, so along y plain gradient
descent is the 1-D map y ← y(1 + η(1 − y²)): near the ridge y = 0 the distance grows by 1 + η per
step, and a start at y₀ needs about ln(0.5/y₀)/ln(1 + η) steps to reach |y| = 0.5 (escaped).
Runs (lr 0.1, 200 steps each):

- from (−2, 10⁻³): gradient descent, Momentum (μ 0.9), Adam;
- from (2, 0), exactly on the ridge: gradient descent alone, and with Gaussian noise of std 10⁻³
  added to each gradient coordinate (what minibatch noise does);
- from the minimum (0, 1) with the same noise.
"""

from __future__ import annotations

import math

import numpy as np

from dyntrace.gallery.base import claim

TITLE = "Saddle point vs minimum: gradient descent stalls at a saddle; noise, momentum and Adam leave it"
CAPTION = """
Left: paths on f(x, y) = x² + (y² − 1)²/4, which has two minima (+) and a saddle between them (×),
where the gradient is zero as at a minimum. From (−2, 0.001), a hair off the ridge y = 0, gradient
descent (lr 0.1) first slides down to the saddle and lingers there before it turns towards a minimum;
Momentum (same lr, μ 0.9) and Adam (same lr) turn much sooner. Started exactly on the ridge (2, 0),
gradient descent converges to the saddle and stays: the gradient there is 0. The same start with a
little noise in every gradient (std 0.001, like minibatch noise) escapes. Right: the distance along
y from the ridge, log scale: near the saddle it grows by a constant factor per step — 1.1 for
gradient descent, 1.32 for Momentum (dashed: the linear predictions) — so every factor of 10 closer
to the ridge costs gradient descent another 24 steps. Adam's first steps have length ≈ lr whatever
the gradient's size, so it leaves in a few steps. The same noise at a minimum (bottom line, distance
from y = 1) stays at its predicted level ≈ 1.7 × 10⁻⁴: a minimum traps, a saddle does not.
"""

# -- configuration (saved into each run file) --------------------------------------------------
FUNCTION = "double_well"  # f = x² + (y² − 1)²/4 (catalog functions2d)
LR = 0.1
MOMENTUM = 0.9
STEPS = 200
NOISE = 1e-3  # std of the Gaussian noise added to each gradient coordinate
NEAR = (-2.0, 1e-3)  # a hair off the ridge
ON_RIDGE = (2.0, 0.0)  # from the other side, so the paths do not hide each other
MINIMUM = (0.0, 1.0)
ESCAPE = 0.5  # escaped: |y| ≥ 0.5, half-way from the saddle to a minimum
SEED = 0
CURVATURE_Y = -1.0  # ∂²f/∂y² at the saddle
CURVATURE_MIN = 2.0  # ∂²f/∂x² and ∂²f/∂y² at the minima

RUNS = {  # label: (optimizer, options, start, noise)
    "gd": ("sgd", {}, NEAR, 0.0),
    "momentum": ("momentum", {"momentum": MOMENTUM}, NEAR, 0.0),
    "adam": ("adam", {}, NEAR, 0.0),
    "gd_ridge": ("sgd", {}, ON_RIDGE, 0.0),
    "gd_ridge_noise": ("sgd", {}, ON_RIDGE, NOISE),
    "gd_minimum_noise": ("sgd", {}, MINIMUM, NOISE),
}
LABELS = {
    "gd": "gradient descent from (−2, 0.001)",
    "momentum": "Momentum (μ 0.9) from (−2, 0.001)",
    "adam": "Adam from (−2, 0.001)",
    "gd_ridge": "gradient descent from (2, 0), exactly on the ridge",
    "gd_ridge_noise": "… the same with gradient noise (std 0.001)",
    "gd_minimum_noise": "gradient noise at the minimum (0, 1)",
}
COLORS = {
    "gd": "sgd",
    "momentum": "momentum",
    "adam": "adam",
    "gd_ridge": "#949494",
    "gd_ridge_noise": "#117733",
    "gd_minimum_noise": "#882255",
}
STYLES = {"gd_ridge": "--", "gd_minimum_noise": ":"}


def path_run(optimizer_name: str, options: dict, start, noise: float, steps: int = STEPS):
    """A callable ``path -> None`` recording one path on the double well (lr 0.1)."""

    def record(path: str) -> None:
        import torch

        import dyntrace
        from dyntrace.catalog import get
        from dyntrace.catalog.optimizers import make_optimizer
        from dyntrace.paths import Point

        point = Point(get("function", FUNCTION), start)
        optimizer = make_optimizer(optimizer_name, point.parameters(), lr=LR, **options)
        draws = torch.Generator().manual_seed(SEED)
        config = {
            "function": FUNCTION,
            "optimizer": optimizer_name,
            "lr": LR,
            **options,
            "start": list(start),
            "gradient_noise_std": noise,
            "steps": steps,
            "seed": SEED,
        }
        with dyntrace.Recorder(point, optimizer, path, every=1, probes=["scalars"], config=config) as rec:
            for _ in range(steps):
                optimizer.zero_grad()
                loss = point()
                xy = point.xy.detach()
                rec.log(x=xy[0].clone(), y=xy[1].clone(), loss=loss.detach())  # step t: after t updates
                loss.backward()
                if noise:
                    point.xy.grad.add_(noise * torch.randn(2, generator=draws, dtype=torch.float64))
                optimizer.step()
            with torch.no_grad():
                xy = point.xy.detach()
                rec.log(x=xy[0].clone(), y=xy[1].clone(), loss=point().detach())

    return record


def runs(quick: bool) -> dict:
    # 6 × 200 steps of a 2-number model take about a second: quick mode runs the same
    return {
        label: path_run(name, options, start, noise) for label, (name, options, start, noise) in RUNS.items()
    }


def momentum_rate(
    lr: float = LR, mu: float = MOMENTUM, curvature: float = CURVATURE_Y
) -> tuple[float, float]:
    """(λ, A): heavy-ball momentum on a direction of curvature h < 0 grows like y_t ≈ A·y₀·λᵗ,
    λ the largest root of λ² − (1 + μ − ηh)λ + μ = 0; A from y₁ = y₀(1 − ηh) and zero velocity."""
    b = 1 + mu - lr * curvature
    root = math.sqrt(b * b - 4 * mu)
    big, small = (b + root) / 2, (b - root) / 2
    return big, ((1 - lr * curvature) - small) / (big - small)


def gd_escape(y0: float, lr: float = LR, threshold: float = ESCAPE, steps: int = 10_000):
    """First t with |y_t| ≥ threshold for the exact 1-D map y ← y(1 + η(1 − y²)), or None."""
    y = y0
    for t in range(steps + 1):
        if abs(y) >= threshold:
            return t
        y = y * (1 + lr * (1 - y * y))
    return None


def noise_escape_band(noise: float = NOISE, lr: float = LR, threshold: float = ESCAPE):
    """(median, 5 %, 95 %) escape step of noisy gradient descent started on the ridge, from the
    linear growth y_t ≈ ησ·Z·(1 + η)ᵗ / √((1 + η)² − 1), Z ~ N(0, 1) (|Z| at its median 0.674 and
    its 5 %/95 % points 0.063 and 1.96)."""
    grow = 1 + lr
    scale = lr * noise / math.sqrt(grow**2 - 1)

    def steps(z):
        return math.log(threshold / (scale * z)) / math.log(grow)

    return steps(0.674), steps(1.96), steps(0.063)


def stationary_std(noise: float = NOISE, lr: float = LR, curvature: float = CURVATURE_MIN) -> float:
    """Std of each coordinate of noisy gradient descent at a minimum of curvature h:
    ησ/√(1 − (1 − ηh)²) (an AR(1) process)."""
    return lr * noise / math.sqrt(1 - (1 - lr * curvature) ** 2)


def figure(runs):
    from matplotlib.figure import Figure

    from dyntrace.catalog.functions2d import FUNCTIONS
    from dyntrace.plots.optimizer_paths import draw_contour, path_xy
    from dyntrace.plots.saddle import plot_escape
    from dyntrace.plots.theme import method_color

    colors = {k: method_color(v) if not v.startswith("#") else v for k, v in COLORS.items()}
    fig = Figure(figsize=(15, 6.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.25, 1))
    function = FUNCTIONS[FUNCTION]
    draw_contour(left, function, levels=16)
    for k in (
        "gd_ridge_noise",
        "gd_ridge",
        "gd",
        "momentum",
        "adam",
    ):  # the ridge run's dashes over the noisy one
        _, x, y = path_xy(runs[k])
        left.plot(
            x,
            y,
            color=colors[k],
            ls=STYLES.get(k, "-"),
            lw=2.4 if k == "gd_ridge" else 1.6,
            marker="o",
            ms=2.2,
            label=LABELS[k],
        )
        left.plot(x[-1], y[-1], marker="s", ms=7, color=colors[k], mec="k", ls="none")
    left.plot(*zip(NEAR, ON_RIDGE), marker="o", ms=9, mfc="white", mec="k", ls="none", label="starts")
    left.plot(0, -1, marker="+", ms=12, mew=2, color="k", ls="none")
    left.plot(0, 0, marker="x", ms=11, mew=2.5, color="k", ls="none", label="saddle (gradient 0)")
    _, xm, ym = path_xy(runs["gd_minimum_noise"])
    left.plot(xm, ym, color=colors["gd_minimum_noise"], lw=0.8)
    left.annotate(
        "noise at the minimum\nstays within 0.001",
        (0, 1),
        xytext=(0.9, 1.3),
        fontsize="small",
        arrowprops={"arrowstyle": "->", "color": "dimgray"},
    )
    left.set_aspect("equal")
    left.set_title("Paths on f(x, y) = x² + (y² − 1)²/4, lr 0.1, 200 steps (■ end)")

    order = ["gd", "momentum", "adam", "gd_ridge", "gd_ridge_noise", "gd_minimum_noise"]
    plot_escape(
        [runs[k] for k in order],
        centers=[0, 0, 0, 0, 0, 1.0],
        labels=[LABELS[k] for k in order],
        colors=[colors[k] for k in order],
        styles=[STYLES.get(k, "-") for k in order],
        ax=right,
    )
    t = np.arange(0, STEPS + 1)
    right.plot(
        t, NEAR[1] * (1 + LR) ** t, color=colors["gd"], ls="--", lw=1, label="predicted: × (1 + η) per step"
    )
    rate, amplitude = momentum_rate()
    right.plot(
        t,
        amplitude * NEAR[1] * rate**t,
        color=colors["momentum"],
        ls="--",
        lw=1,
        label=f"predicted: × {rate:.3f} per step",
    )
    right.axhline(
        stationary_std(),
        color=colors["gd_minimum_noise"],
        ls="--",
        lw=1,
        label="predicted noise level at a minimum",
    )
    right.set_ylim(3e-8, 3)
    right.set_xlim(0, STEPS)
    right.text(
        STEPS * 0.99, ESCAPE * 1.25, "escaped: |y| = 0.5", ha="right", fontsize="small", color="dimgray"
    )
    right.get_legend().remove()
    for line in right.get_lines():
        if line.get_gid() == LABELS["gd_minimum_noise"]:
            line.set_linestyle("-")
            line.set_linewidth(0.8)
    seen = {}
    for a in (left, right):
        for handle, text in zip(*a.get_legend_handles_labels()):
            seen.setdefault(text.split(" (exactly 0")[0], handle)
    fig.legend(seen.values(), seen.keys(), loc="outside lower center", ncols=4, fontsize="small")
    right.set_ylabel("distance along y from the ridge y = 0 (or from y = 1)")
    right.set_title("Leaving the saddle: distance from the ridge, log scale")
    fig.suptitle(
        "At a saddle the gradient is zero as at a minimum: only a push along the way down gets a run out"
    )
    return fig


def claims(runs):
    from dyntrace.plots.optimizer_paths import path_xy
    from dyntrace.plots.saddle import escape_step

    out = []
    steps, x, y = path_xy(runs["gd"])
    expected = np.empty_like(y)
    expected[0] = NEAR[1]
    for t in range(1, len(y)):
        expected[t] = expected[t - 1] * (1 + LR * (1 - expected[t - 1] ** 2))
    error = max(
        float(np.max(np.abs(y - expected))), float(np.max(np.abs(x - NEAR[0] * (1 - 2 * LR) ** steps)))
    )
    out.append(
        claim(
            "gradient descent is the exact map x ← 0.8x, y ← y(1 + η(1 − y²)) (largest deviation)",
            error,
            error < 1e-12,
            "exact (float64 round-off)",
        )
    )
    escape = {k: escape_step(runs[k], threshold=ESCAPE) for k in ("gd", "momentum", "adam")}
    linear = math.log(ESCAPE / NEAR[1]) / math.log(1 + LR)
    out.append(
        claim(
            "gradient descent from y₀ = 0.001 escapes (|y| ≥ 0.5) when the 1-D map predicts",
            escape["gd"],
            escape["gd"] == gd_escape(NEAR[1]),
            f"{gd_escape(NEAR[1])} (linear estimate ln(0.5/y₀)/ln(1.1) = {linear:.1f})",
        )
    )
    rate, amplitude = momentum_rate()
    predicted = math.log(ESCAPE / (amplitude * NEAR[1])) / math.log(rate)
    out.append(
        claim(
            "Momentum escapes sooner than gradient descent at the same lr, near its linear prediction",
            {"Momentum": escape["momentum"], "gradient descent": escape["gd"]},
            escape["momentum"] is not None
            and escape["momentum"] < escape["gd"]
            and abs(escape["momentum"] - predicted) <= 5,
            f"Momentum ≈ {predicted:.1f} (growth × {rate:.3f} per step) ± 5",
            kind="phenomenon",
        )
    )
    out.append(claim_adam_escapes(runs["adam"], escape["gd"]))
    _, x, y = path_xy(runs["gd_ridge"])
    _, grad = runs["gd_ridge"].scalar("grad_norm")
    out.append(
        claim(
            "exactly on the ridge, gradient descent converges to the saddle and stays: y stays 0, "
            "the gradient vanishes (|∇f| at the end)",
            {"largest |y|": float(np.max(np.abs(y))), "|∇f|": grad[-1]},
            np.max(np.abs(y)) == 0 and grad[-1] < 1e-12,
            "y = 0, |∇f| → 0",
        )
    )
    out.append(claim_noise_escapes(runs["gd_ridge_noise"]))
    out.append(claim_minimum_holds(runs["gd_minimum_noise"]))
    _, _, ym = path_xy(runs["gd_minimum_noise"])
    settled = slice(50, None)  # after the first few correlation times
    rms = float(np.sqrt(np.mean((ym[settled] - MINIMUM[1]) ** 2)))
    out.append(
        claim(
            "… and its y wobbles at the predicted level ησ/√(1 − (1 − 2η)²) (rms, steps 50–200)",
            rms,
            abs(rms / stationary_std() - 1) < 0.3,
            f"{stationary_std():.3g} ± 30 %",
        )
    )
    return out


def claim_adam_escapes(run, gd_steps):
    """Adam leaves the saddle within 10 steps (a control: gradient descent's run)."""
    from dyntrace.plots.saddle import escape_step

    steps = escape_step(run, threshold=ESCAPE)
    return claim(
        "Adam escapes within 2 × 0.5 / lr = 10 steps: its first steps have length ≈ lr, however small the "
        "gradient (0.002 here)",
        steps if steps is not None else "never",
        steps is not None and steps <= 2 * ESCAPE / LR,
        f"gradient descent needs {gd_steps}",
        kind="phenomenon",
    )


def claim_noise_escapes(run):
    """Noisy gradient descent from the ridge escapes within the predicted band (a control: no noise)."""
    from dyntrace.plots.saddle import escape_step

    steps = escape_step(run, threshold=ESCAPE)
    median, low, high = noise_escape_band()
    return claim(
        "a little gradient noise (std 0.001) gets gradient descent off the ridge: it escapes",
        steps if steps is not None else "never",
        steps is not None and low <= steps <= high,
        f"≈ {median:.0f} steps (90 % of noise draws: {low:.0f}–{high:.0f})",
        kind="phenomenon",
    )


def claim_minimum_holds(run, center=MINIMUM):
    """The same noise at a minimum stays within 0.001 of it (a control: the noisy run at the saddle)."""
    from dyntrace.plots.optimizer_paths import path_xy

    _, x, y = path_xy(run)
    largest = float(np.max(np.hypot(x - center[0], y - center[1])))
    return claim(
        "the same noise at a minimum stays there: largest distance from where it started over 200 steps",
        largest,
        largest < 1e-3,
        "< 0.001 (at the saddle it reached 0.5)",
        kind="phenomenon",
    )
