"""Curvature of the loss during training: sharpness, Hessian trace, Adam's preconditioned sharpness.

On its own schedule (every ``every``-th record step), right before ``optimizer.step()``, the
probe evaluates a loss once more with a graph for double backward and measures, with
Hessian-vector products Hv = ∇(∇L · v) (Pearlmutter 1994; as PyHessian does):

- ``sharpness``: λ_max(H), the top eigenvalue by power iteration, warm-started from the last
  measurement's eigenvector (a few products suffice once training moves slowly);
- ``trace``: tr H by Hutchinson's estimator E[zᵀHz] over Rademacher vectors z, with the
  standard error of the mean over the ``trace_samples`` vectors (``trace_se``);
- ``precond_sharpness`` (Adam/AdamW and RMSprop): λ_max(P⁻¹H), by power iteration on the
  symmetric P^{-1/2} H P^{-1/2}, with Adam's preconditioner as in Cohen et al. (2022):
  P = (1 − β₁ᵗ)·diag(√v̂ + ε), v̂ = v/(1 − β₂ᵗ) (RMSprop: P = diag(√v + ε)).

Each goes to the run's scalar log as ``curvature/<name>`` beside the threshold it is held
against (``threshold``: 2/η, (2 + 2β)/η with momentum, …; ``precond_threshold``:
(2 + 2β₁)/((1 − β₁)η), 38/η for β₁ = 0.9; see :mod:`dyntrace.analysis.curvature`), and the
measurement's cost: ``seconds`` and ``cost`` in plain training steps (its time over the median
time of a plain step, timed by the probe on steps that record nothing; recorded as soon as both
are known, so the first one may appear at a later record step, and on a GPU one record step
later, when its CUDA events have completed).

The loss (why two forms): the Hessian needs a loss the probe can evaluate again, and a training
loop computes its loss outside the model, from targets the model never sees. So by default
(``batch="fixed"``) ``loss_fn(model) -> loss`` closes over a measurement batch of the user's
choice: the same batch at every measurement, so the curve shows the landscape changing rather
than batch-to-batch noise (the edge-of-stability papers measure on a fixed subset or the full
training set), and it works with any loop, gradient accumulation or data parallelism. With
``batch="record"`` the probe keeps the inputs of the record step's first forward pass (a forward
pre-hook on the root module) and calls ``loss_fn(output, *args, **kwargs)`` on the model's
output for them: for models whose forward receives the targets (``labels=`` of Hugging Face
models, autoencoders, language models on their own input).

What the training loop sees is left as it was, bit for bit: the gradients are taken with
``torch.autograd.grad`` (``.grad`` is not touched), every buffer is restored afterwards (BatchNorm
running statistics and ``num_batches_tracked``), the global RNG streams are forked (dropout in
the measurement's forward draws from a copy), and the probe's own random vectors come from its
own generator. The other probes' hooks do not see the measurement's forward pass: hooks that
dyntrace registered are set aside while it runs (the user's own hooks do run). The model is run
unwrapped (no DistributedDataParallel collective); with a ``SyncBatchNorm`` under
``torch.distributed`` the probe switches itself off (its forward would wait on the other ranks).

Cost per measurement: one forward and backward with a graph (≈ 2 plain steps), then one
double-backward product (≈ 1–2 steps) per power iteration (up to ``iters`` each for H and
P⁻¹H) and per Hutchinson vector. On CPU tensors the power iteration stops when the eigenvalue
changes by less than ``tol`` (relative); on an accelerator it runs ``iters`` products with the
converged values frozen by a device-side mask, so that no host synchronisation happens inside
the loop. Memory: the graph of one double backward, two model-sized eigenvectors kept between
measurements, and a few model-sized temporaries.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections import deque

import torch

from dyntrace.checks import check_bool, check_choice, check_int, check_number
from dyntrace.probes.adaptive import inner_optimizer, optimizer_family
from dyntrace.probes.base import Probe

__all__ = ["CurvatureProbe", "hessian_vector_product", "power_iteration", "hutchinson_trace"]

BATCH_MODES = ("fixed", "record")


class CurvatureProbe(Probe):
    """Top Hessian eigenvalue, Hessian trace and preconditioned sharpness on a schedule.

    Args:
        loss_fn: ``loss_fn(model) -> loss`` (``batch="fixed"``) or
            ``loss_fn(output, *args, **kwargs) -> loss`` (``batch="record"``); a scalar tensor
            with a graph. ``model`` is the unwrapped module (inside a DDP wrapper).
        every: measure on every ``every``-th record step (int, default 1: each record step),
            or a callable ``step -> bool`` asked on record steps.
        batch: "fixed" (default) or "record" (see the module's docstring).
        iters: power-iteration cap per eigenvalue (default 20).
        tol: relative change of the eigenvalue that stops the iteration (default 1e-3).
        trace_samples: Rademacher vectors of Hutchinson's trace estimate (default 10; 0 skips
            the trace).
        preconditioned: also measure λ_max(P⁻¹H) for Adam-family and RMSprop optimizers
            (default True).
        early_stop: stop a power iteration at ``tol`` with a host check per product (default:
            on CPU tensors only, where it costs no device sync; elsewhere ``iters`` products
            run with a device-side convergence mask).
        batch_size: examples in the measurement batch (default: dim 0 of the first tensor the
            model receives), recorded for the gradient noise scale.
        seed: seed of the probe's own generator (start vectors and Rademacher vectors).
    """

    name = "curvature"
    in_all = False  # it needs a loss: never made by name alone

    def __init__(
        self,
        loss_fn=None,
        *,
        every=1,
        batch: str = "fixed",
        iters: int = 20,
        tol: float = 1e-3,
        trace_samples: int = 10,
        preconditioned: bool = True,
        early_stop: bool | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ):
        if not callable(loss_fn):
            raise ValueError(
                f"Invalid loss_fn: {loss_fn!r} (expected a callable; the curvature probe needs a loss: "
                "CurvatureProbe(loss_fn=lambda model: ...))"
            )
        if not callable(every):
            check_int("every", every, low=1)
        check_choice("batch", batch, BATCH_MODES)
        check_int("iters", iters, low=1)
        check_number("tol", tol, low=0)
        check_int("trace_samples", trace_samples, low=0)
        check_bool("preconditioned", preconditioned)
        if early_stop is not None:
            check_bool("early_stop", early_stop)
        check_int("batch_size", batch_size, low=1, optional=True)
        self.loss_fn = loss_fn
        self.every = every
        self.batch = batch
        self.iters = iters
        self.tol = float(tol)
        self.trace_samples = trace_samples
        self.preconditioned = preconditioned
        self.early_stop = early_stop
        self.batch_size = batch_size
        self.seed = seed
        self._records = 0  # record steps seen
        self._due = False
        self._off = False
        self._inputs = None  # (args, kwargs) of the record step's first forward
        self._train_batch = 0  # examples in the record step's forward passes
        self._vectors: dict[str, tuple] = {}  # warm starts: "hessian", "precond" → (param ids, vector)
        self._generators: dict[torch.device, torch.Generator] = {}
        self._timer = _PlainStepTimer()
        self._pending: list = []  # measurements whose time is not known yet: (clock, began, ended)
        self._plain_logged = None

    # -- the contract --------------------------------------------------------------------------

    def setup(self, ctx):
        """Checks the model can be measured here; writes scalars only (no columns): None."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if any(isinstance(m, torch.nn.SyncBatchNorm) for m in ctx.module.modules()):
                self._off = True
                ctx.warn_once(
                    self.name,
                    "curvature: SyncBatchNorm under torch.distributed would wait on the other ranks; not measured",
                )
        return None

    def attach(self, ctx):
        """On record steps: a root forward pre-hook counts the batch (and keeps it, ``batch="record"``)."""
        self._records += 1
        self._due = not self._off and self._is_due(ctx.step)
        self._inputs, self._train_batch = None, 0
        if not self._due:
            return []
        return [ctx.module.register_forward_pre_hook(self._see_inputs, with_kwargs=True)]

    def _is_due(self, step: int) -> bool:
        if callable(self.every):
            return bool(self.every(step))
        return (self._records - 1) % self.every == 0

    def _see_inputs(self, module, args, kwargs):
        if not torch.is_grad_enabled():
            return  # a validation pass in between
        if self._inputs is None and self.batch == "record":
            self._inputs = (args, kwargs)  # references only: the step's own tensors
        self._train_batch += _batch_dim(args, kwargs)

    def before_step(self, ctx):
        """After backward, before ``optimizer.step()``: measure at the weights the step starts from."""
        if not self._due:
            return
        self._timer.release(ctx)
        if self.batch == "record" and self._inputs is None:
            ctx.warn_once(
                (self.name, "inputs"),
                "curvature: no forward pass with gradients seen on a record step; not measured",
            )
            return
        # the parameters the recorded optimizer steps (not frozen ones, nor another optimizer's)
        params = [p for p, role in zip(ctx.params, ctx.param_roles()) if role == "trainable"]
        if not params:
            return
        device = params[0].device
        clock = _Clock(device)
        began = clock.mark()
        out = self._measure(ctx, params)
        ended = clock.mark()
        self._inputs = None
        for name, value in out.items():
            ctx.emit_scalar(f"curvature/{name}", value)
        self._pending.append((clock, began, ended))

    def after_step(self, ctx):
        """Times a later plain step; logs the cost of measurements whose times are known."""
        self._timer.arm(ctx)
        plain = self._timer.median()
        if plain is not None and plain != self._plain_logged:
            self._plain_logged = plain
            ctx.emit_scalar("curvature/plain_step_seconds", _full(plain, _device(ctx)))
        if not self._pending:
            return
        done = [(clock, clock.elapsed(began, ended)) for clock, began, ended in self._pending]
        self._pending = [m for m, (_, s) in zip(self._pending, done) if s is None][-16:]  # bounded
        resolved = [(clock, s) for clock, s in done if s is not None]
        if not resolved:
            return
        clock, seconds = resolved[-1]  # one value per record step: the newest (on the CPU, this step's)
        ctx.emit_scalar("curvature/seconds", _full(seconds, clock.device))
        if plain is not None:
            ctx.emit_scalar("curvature/cost", _full(seconds / plain, clock.device))

    def options(self):
        return {
            "every": self.every if isinstance(self.every, int) else repr(self.every),
            "batch": self.batch,
            "iters": self.iters,
            "tol": self.tol,
            "trace_samples": self.trace_samples,
            "preconditioned": self.preconditioned,
            "early_stop": self.early_stop,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    # -- the measurement -----------------------------------------------------------------------

    def _measure(self, ctx, params) -> dict[str, torch.Tensor]:
        device = params[0].device
        with _isolated(ctx.module, device):  # forward, gradient and every product inside
            out = self._products(ctx, params)
        return {k: v.detach().to(device=device, dtype=torch.float64).reshape(()) for k, v in out.items()}

    def _products(self, ctx, params) -> dict[str, torch.Tensor]:
        device = params[0].device
        early = device.type == "cpu" if self.early_stop is None else self.early_stop
        sync_free = not early  # on the CPU an early stop costs no device sync
        out: dict[str, torch.Tensor] = {}
        loss, batch = self._loss(ctx.module)
        with torch.enable_grad():
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        used = [i for i, g in enumerate(grads) if g is not None]
        params = [params[i] for i in used]
        grads = [grads[i] for i in used]
        if not params:
            return out
        hvp = hessian_vector_product(grads, params)
        with torch.no_grad():
            out["loss"] = loss.detach().double()
            out["grad_sq"] = _dot(grads, grads)
            train = [p.grad for p in params if p.grad is not None and not p.grad.is_sparse]
            if train and self._train_batch:
                out["train_grad_sq"] = _dot(train, train)
                out["train_batch_size"] = _full(self._train_batch, device)
            size = self.batch_size or batch
            if size:
                out["batch_size"] = _full(size, device)
        gen = self._generator(device)
        lam, v, n = power_iteration(
            hvp, self._start("hessian", params, gen), iters=self.iters, tol=self.tol, sync_free=sync_free
        )
        self._vectors["hessian"] = ([id(p) for p in params], [x.detach() for x in v])
        out["sharpness"], out["iters"] = lam, n
        threshold = _sgd_threshold(ctx.optimizer, device)
        if threshold is not None:
            out["threshold"] = threshold
        if self.trace_samples:
            out["trace"], out["trace_se"] = hutchinson_trace(hvp, params, self.trace_samples, gen)
        if self.preconditioned:
            scale = _preconditioner(ctx, params)
            if scale is not None:
                d, threshold = scale

                def precond(vec):  # P^{-1/2} H P^{-1/2} v: symmetric, same spectrum as P⁻¹H
                    return [a * b for a, b in zip(d, hvp([a * b for a, b in zip(d, vec)]))]

                v0 = self._start("precond", params, gen)
                lam, v, n = power_iteration(precond, v0, iters=self.iters, tol=self.tol, sync_free=sync_free)
                self._vectors["precond"] = ([id(p) for p in params], [x.detach() for x in v])
                out["precond_sharpness"], out["precond_iters"] = lam, n
                if threshold is not None:
                    out["precond_threshold"] = threshold
        return out

    def _start(self, key, params, generator):
        """The last eigenvector (a warm start) if it was taken over the same parameters, else random."""
        ids, vector = self._vectors.get(key, (None, None))
        if ids == [id(p) for p in params]:
            return vector
        return _random_like(params, generator)

    def _loss(self, module):
        """The loss with a graph, and the measurement batch's size (dim 0 of the first input)."""
        seen = []

        def count(mod, args, kwargs):
            if not seen:
                seen.append(_batch_dim(args, kwargs))

        handle = module.register_forward_pre_hook(count, with_kwargs=True)
        try:
            with torch.enable_grad():
                if self.batch == "record":
                    args, kwargs = self._inputs
                    loss = self.loss_fn(module(*args, **kwargs), *args, **kwargs)
                else:
                    loss = self.loss_fn(module)
        finally:
            handle.remove()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise TypeError("loss_fn must return a one-element tensor that depends on the parameters")
        return loss.reshape(()), (seen[0] if seen else 0)

    def _generator(self, device) -> torch.Generator:
        device = torch.device(device)
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]


# -- Hessian-vector products, power iteration, Hutchinson ------------------------------------------


def hessian_vector_product(grads, params):
    """v ↦ Hv for the Hessian of the loss whose gradient ``grads`` (taken with
    ``create_graph=True``) is with respect to ``params``; vectors are lists shaped like ``params``.

    Hv = ∇_θ(∇_θL · v), one double backward through the retained graph per product.
    """
    live = [i for i, g in enumerate(grads) if g.requires_grad]  # a gradient constant in θ: no curvature

    def hvp(vector):
        if not live:
            return [torch.zeros_like(p) for p in params]
        with torch.enable_grad():
            out = torch.autograd.grad(
                [grads[i] for i in live],
                params,
                grad_outputs=[vector[i] for i in live],
                retain_graph=True,
                allow_unused=True,
            )
        return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(out, params)]

    return hvp


def power_iteration(operator, v0, *, iters: int = 20, tol: float = 1e-3, sync_free: bool = False):
    """The eigenvalue of largest magnitude of a symmetric operator and its unit eigenvector.

    λ is the Rayleigh quotient vᵀAv of the current unit vector; the iteration stops when λ
    changes by at most ``tol``·|λ| or after ``iters`` products. ``sync_free``: run all ``iters``
    products and freeze the converged values with a device-side mask (no host sync in the loop).
    Returns (λ, v, products used) with λ and the count as 0-d tensors on v's device.
    """
    v = _normalised(v0)
    device = v[0].device
    lam = torch.full((), float("nan"), dtype=torch.float64, device=device)
    used = torch.zeros((), dtype=torch.float64, device=device)
    done = torch.zeros((), dtype=torch.bool, device=device)
    for _ in range(iters):
        w = operator(v)
        new = _dot(v, w)
        norm = _dot(w, w).sqrt()
        converged = (new - lam).abs() <= tol * new.abs()
        if sync_free:
            keep = done
            lam = torch.where(keep, lam, new)
            used = used + (~keep).double()
            safe = torch.where(norm > 0, norm, torch.ones_like(norm)).to(w[0].dtype)
            v = [torch.where(keep, a, b / safe) for a, b in zip(v, w)]
            done = done | converged | (norm == 0)
        else:
            lam, used = new, used + 1
            if float(norm) == 0.0:  # a zero operator (on the CPU: no sync)
                break
            v = [b / norm.to(b.dtype) for b in w]
            if bool(converged):
                break
    return lam, v, used


def hutchinson_trace(operator, like, samples: int, generator: torch.Generator):
    """tr A ≈ mean of zᵀAz over ``samples`` Rademacher vectors z (Hutchinson 1989), and the
    standard error of that mean (std over the samples / √samples; NaN for one sample)."""
    values = []
    for _ in range(samples):
        z = [
            torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype).mul_(2).sub_(1)
            for p in like
        ]
        values.append(_dot(z, operator(z)))
    values = torch.stack(values)
    se = (
        values.std() / math.sqrt(samples)
        if samples > 1
        else torch.full((), float("nan"), dtype=torch.float64, device=values.device)
    )
    return values.mean(), se


def _dot(a, b) -> torch.Tensor:
    """Σ_p ⟨a_p, b_p⟩ in float64 (a 0-d tensor on the device)."""
    return torch.stack([torch.vdot(x.reshape(-1), y.reshape(-1)).double() for x, y in zip(a, b)]).sum()


def _normalised(v):
    norm = _dot(v, v).sqrt()
    return [x / norm.to(x.dtype) for x in v]


def _random_like(params, generator):
    return [torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype) for p in params]


def _full(value, device) -> torch.Tensor:
    """A 0-d float64 tensor on ``device`` (a fill kernel: no host-to-device copy to wait on)."""
    return torch.full((), float(value), dtype=torch.float64, device=device)


def _device(ctx) -> torch.device:
    params = ctx.params
    return params[0].device if params else torch.device("cpu")


def _batch_dim(args, kwargs) -> int:
    """Dim 0 of the first tensor among a forward call's inputs (0 if none)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            return int(value.shape[0])
    return 0


# -- thresholds and preconditioners ------------------------------------------------------------------


def _uniform(groups, keys):
    """The groups' common values of ``keys``, or None if the groups differ."""
    first = tuple(_number(groups[0].get(k)) for k in keys)
    for group in groups[1:]:
        if tuple(_number(group.get(k)) for k in keys) != first:
            return None
    return first


def _number(value):
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.device.type == "cpu":
        return float(value)
    if isinstance(value, (tuple, list)):
        return tuple(_number(v) for v in value)
    return value


def _lr_tensor(lr, device) -> torch.Tensor:
    """The learning rate as a 0-d float64 tensor on ``device`` (a device lr stays there)."""
    if isinstance(lr, torch.Tensor):
        return lr.detach().to(device=device, dtype=torch.float64).reshape(())
    return _full(lr, device)


def _sgd_threshold(optimizer, device):
    """2/η, (2 + 2β)/((1 − d)η), Nesterov (2 + 2β)/((1 + 2β)(1 − d)η) for torch's SGD (one setting
    shared by every group), else None (see :func:`dyntrace.analysis.curvature.sgd_threshold`)."""
    inner = inner_optimizer(optimizer)
    if not isinstance(inner, torch.optim.SGD):
        return None
    common = _uniform(inner.param_groups, ("lr", "momentum", "dampening", "nesterov"))
    if common is None:
        return None
    lr = _lr_tensor(inner.param_groups[0]["lr"], device)
    _, beta, damp, nesterov = common
    beta, damp = float(beta or 0.0), float(damp or 0.0)
    if beta == 0.0:
        return 2.0 / lr
    if nesterov:
        return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * (1.0 - damp) * lr)
    return (2.0 + 2.0 * beta) / ((1.0 - damp) * lr)


def _preconditioner(ctx, params):
    """(P^{-1/2} per parameter, threshold or None) for Adam-family and RMSprop state, else None.

    Adam: P = (1 − β₁ᵗ)·diag(√(v/(1 − β₂ᵗ)) + ε), threshold (2 + 2β₁)/((1 − β₁)η);
    RMSprop: P = diag(√v + ε) (centred: v − ḡ²), threshold 2/η, (2 + 2β)/η with momentum.
    None if a parameter has no state yet (before the first step) or the family has no P here.
    """
    inner = inner_optimizer(ctx.optimizer)
    groups = {id(p): g for g in inner.param_groups for p in g["params"]}
    families = {optimizer_family(inner, g) for g in inner.param_groups}
    if len(families) != 1 or families & {"none", "adagrad"}:
        return None
    family = families.pop()
    scales = []
    for p in params:
        state, group = inner.state.get(p), groups.get(id(p))
        if not state or group is None:
            return None
        eps = group["eps"]
        with torch.no_grad():
            if family == "adam":
                if "exp_avg_sq" not in state or "step" not in state:
                    return None
                v = (
                    state["max_exp_avg_sq"]
                    if group.get("amsgrad") and "max_exp_avg_sq" in state
                    else state["exp_avg_sq"]
                )
                beta1, beta2 = group["betas"]
                t = state["step"]
                # a CPU scalar tensor (or one on the device, capturable/fused) is used as it is: no sync
                t = t.double() if isinstance(t, torch.Tensor) else float(t)
                bias1, bias2 = 1 - beta1**t, 1 - beta2**t
                denom = (v / bias2).sqrt().add_(eps).mul_(bias1)
            else:  # rmsprop
                if "square_avg" not in state:
                    return None
                v = state["square_avg"]
                if group.get("centered") and "grad_avg" in state:
                    v = v.addcmul(state["grad_avg"], state["grad_avg"], value=-1)
                denom = v.sqrt().add_(eps)
            scales.append(denom.rsqrt().to(p.dtype))
    device = params[0].device
    if family == "adam":
        common = _uniform(inner.param_groups, ("lr", "betas"))
        if common is None:
            return scales, None
        beta1 = float(common[1][0])
        return scales, (2.0 + 2.0 * beta1) / ((1.0 - beta1) * _lr_tensor(inner.param_groups[0]["lr"], device))
    common = _uniform(inner.param_groups, ("lr", "momentum"))
    if common is None:
        return scales, None
    beta = float(common[1] or 0.0)
    return scales, (2.0 + 2.0 * beta) / _lr_tensor(inner.param_groups[0]["lr"], device)


# -- leaving the training loop's state alone ------------------------------------------------------


@contextlib.contextmanager
def _isolated(module: torch.nn.Module, device):
    """Run a measurement the training loop does not notice.

    Forks the global RNG streams (CPU and the module's CUDA device), restores every buffer
    (BatchNorm running statistics, ``num_batches_tracked``) bit for bit, sets aside the forward
    hooks dyntrace registered (the activations probe must not count this pass), and runs
    attention on the math kernel (the fused kernels have no double backward).
    """
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.no_grad():
        saved = [(b, b.clone()) for b in module.buffers()]
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=devices))
        stack.enter_context(_without_dyntrace_hooks(module))
        stack.enter_context(_math_attention())
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, copy in saved:
                    buffer.copy_(copy)


def _is_dyntrace(hook) -> bool:
    function = getattr(hook, "func", hook)  # functools.partial
    return (getattr(function, "__module__", None) or "").startswith("dyntrace.")


@contextlib.contextmanager
def _without_dyntrace_hooks(module: torch.nn.Module):
    """Set aside the forward (pre-)hooks registered by dyntrace's own code, in order.

    The probe contract has no "pause the other probes" call; the hooks' dictionaries are the
    modules' own (``_forward_hooks``, ``_forward_pre_hooks``), emptied of dyntrace's entries and
    refilled in their original order afterwards.
    """
    saved = []
    for m in module.modules():
        for attr in ("_forward_pre_hooks", "_forward_hooks"):
            hooks = getattr(m, attr, None)
            if not hooks:
                continue
            ours = [key for key, hook in hooks.items() if _is_dyntrace(hook)]
            if ours:
                saved.append((hooks, list(hooks.items())))
                for key in ours:
                    del hooks[key]
    try:
        yield
    finally:
        for hooks, items in saved:
            hooks.clear()
            hooks.update(items)


def _math_attention():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


# -- timing: the measurement, and a plain step to compare it with ------------------------------------


class _Clock:
    """Wall time on the CPU; CUDA events on a GPU (read later, once completed: no sync)."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed(self, began, ended) -> float | None:
        """Seconds between two marks, or None while a CUDA event is still pending."""
        if self.cuda:
            if not ended.query():
                return None
            return began.elapsed_time(ended) / 1e3
        return ended - began


class _PlainStepTimer:
    """Times whole training steps that record nothing, from their first forward to the end of
    their ``optimizer.step()``; keeps the last 32.

    Armed on a record step (on each until it has 5 samples, then on every 10th), it waits with a
    forward pre-hook on the root module for the next forward pass with gradients: if that step
    is not armed for recording, it times it until its optimizer post-hook; if it is, it gives
    up. Optimizer hooks cannot be added or removed while torch runs the optimizer's hooks, so
    the post-hook is removed from outside that loop (the next forward pass, or the next
    measurement). A hook therefore outlives the record step by one step at most (after the
    recorder closes: until the model's next forward pass and optimizer step).
    """

    def __init__(self):
        self.samples: deque[float] = deque(maxlen=32)
        self._forward = None  # waiting for a plain step's forward
        self._post = None  # waiting for its optimizer post-hook
        self._cleanup = None  # the forward pre-hook that removes a spent post-hook
        self._start = None
        self._clock = None
        self._ctx = None
        self._marks: list = []  # (began, ended) marks not resolved yet (CUDA)
        self._records = 0

    def arm(self, ctx):
        """From a probe's ``after_step`` (inside the optimizer's post-hooks: module hooks only)."""
        self._records += 1
        if self._forward is not None or self._post is not None:
            return
        if len(self.samples) >= 5 and self._records % 10:
            return  # enough samples: keep them fresh at every 10th record step
        self._ctx = ctx
        self._forward = ctx.module.register_forward_pre_hook(self._on_forward)

    def _on_forward(self, module, args):
        if not torch.is_grad_enabled():
            return  # a validation pass: wait for the next training step
        self._forward.remove()  # module hooks are called from a copy: safe to remove here
        self._forward = None
        if self._ctx.recording:
            return  # a record step: not plain
        params = self._ctx.params
        self._clock = _Clock(params[0].device if params else "cpu")
        self._start = self._clock.mark()
        self._post = self._ctx.optimizer.register_step_post_hook(self._on_step_end)

    def _on_step_end(self, optimizer, args, kwargs):
        if self._start is None:
            return  # spent; removed at the next forward pass
        self._marks.append((self._clock, self._start, self._clock.mark()))
        self._start = None
        self._cleanup = self._ctx.module.register_forward_pre_hook(self._remove_spent)

    def _remove_spent(self, module, args):
        self.release(self._ctx)

    def release(self, ctx):
        """Remove a spent post-hook (called outside the optimizer's post-hook loop)."""
        if self._post is not None and self._start is None:
            self._post.remove()
            self._post = None
        if self._cleanup is not None:
            self._cleanup.remove()
            self._cleanup = None

    def median(self) -> float | None:
        still = []
        for clock, began, ended in self._marks:
            seconds = clock.elapsed(began, ended)
            if seconds is None:
                still.append((clock, began, ended))
            else:
                self.samples.append(seconds)
        self._marks = still
        return statistics.median(self.samples) if self.samples else None
