"""``dyntrace train [OPTIONS] -o RUN.h5``: the reference trainer from the command line.

Options override ``--config FILE`` (TOML or JSON, the keys of :class:`dyntrace.trainer.TrainConfig`),
which overrides the defaults; ``--set KEY=VALUE`` reaches any key, including options tables
(``--set optimizer_options.momentum=0.5``). ``--list`` prints the catalog.
"""

import json

import click

from dyntrace import catalog
from dyntrace.errors import DyntraceError, UnknownNameError

__all__ = ["command", "check_config"]

# Upper bounds of what `dyntrace train` builds (the Python API leaves them to the caller): far
# beyond the reference experiments, well short of a machine that stalls for an hour.
MAXIMA = {
    "depth": 256,
    "width": 1 << 14,
    "batch_size": 1 << 20,
    "epochs": 10**6,
    "steps": 10**9,
    "every": 10**9,
    "trajectory": 10**9,
    "early_stopping": 10**6,
    "seed": 2**63 - 1,
}
MAX_PARAMETERS = 1 << 31  # a rough count: width² per hidden layer
LANDSCAPE_MAXIMA = {"resolution": 1001, "steps": 100_001, "examples": 1 << 20}
MAX_GRID_POINTS = 1 << 20


def check_config(config) -> None:
    """Bounds and device of a :class:`dyntrace.trainer.TrainConfig` (from options, a config file
    or a run file): ``ConfigError`` naming the key, its value and the limit."""
    from dyntrace.catalog import ConfigError

    for key, top in MAXIMA.items():
        value = getattr(config, key)
        if value is not None and value > top:
            raise ConfigError(f"Invalid {key}: {value} (at most {top})")
    rough = config.width * config.width * max(1, config.depth)
    if rough > MAX_PARAMETERS:
        raise ConfigError(
            f"Invalid model size: depth {config.depth} x width {config.width} is about {rough:.2g} "
            f"parameters (at most {MAX_PARAMETERS:.2g})"
        )
    check_device(config.device)
    for kind, options in (config.landscape or {}).items():
        if not isinstance(options, dict):
            if kind == "examples" and isinstance(options, int) and options > LANDSCAPE_MAXIMA["examples"]:
                raise ConfigError(
                    f"Invalid landscape examples: {options} (at most {LANDSCAPE_MAXIMA['examples']})"
                )
            continue
        for key in ("resolution", "steps"):
            value = options.get(key)
            sizes = value if isinstance(value, (list, tuple)) else [value]
            for size in sizes:
                if isinstance(size, int) and size > LANDSCAPE_MAXIMA[key]:
                    raise ConfigError(
                        f"Invalid landscape {kind}.{key}: {value} (at most {LANDSCAPE_MAXIMA[key]} a side)"
                    )
            if key == "resolution" and all(isinstance(v, int) for v in sizes) and value is not None:
                points = sizes[0] * sizes[-1]
                if points > MAX_GRID_POINTS:
                    raise ConfigError(
                        f"Invalid landscape {kind}.resolution: {value} "
                        f"({points} grid points; at most {MAX_GRID_POINTS})"
                    )


def check_device(device) -> None:
    """A torch device string that names a device this machine has."""
    import torch

    from dyntrace.catalog import ConfigError

    if not isinstance(device, str) or not device:
        raise ConfigError(f"Invalid device: {device!r} (a torch device such as 'cpu' or 'cuda:0')")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"Invalid device: {device!r} (a torch device such as 'cpu' or 'cuda:0')") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise ConfigError(
                f"Invalid device: {device!r} (this machine has {count} CUDA device{'' if count == 1 else 's'})"
            )
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"Invalid device: {device!r} (MPS is not available here)")
    elif parsed.type != "cpu":
        raise ConfigError(f"Invalid device: {device!r} (cpu, cuda[:N] or mps)")


def _name(kind: str):
    """A click callback that checks a catalog name (a did-you-mean on the option, exit 2)."""

    def check(ctx, param, value):
        if value is not None:
            try:
                catalog.get(kind, value)
            except UnknownNameError as exc:
                raise click.BadParameter(str(exc)) from None
        return value

    return check


def _assignments(ctx, param, values):
    """``KEY=VALUE`` pairs → a dict; VALUE is JSON (numbers, true, [..], {..}) or a plain string."""
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        table, dot, sub = key.partition(".")
        if dot:
            out.setdefault(table, {})[sub] = value
        else:
            out[key] = value
    return out


def _probes(ctx, param, value):
    if value is None or value == "all":
        return value
    return [name.strip() for name in value.split(",") if name.strip()]


_SLICES = ("plane", "line", "trajectory")


def _slices(ctx, param, value):
    """--landscape: comma-separated slice names; an unknown one is a usage error."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in _SLICES]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown slice {unknown[0] if unknown else value!r}; valid: {', '.join(_SLICES)}"
        )
    return names


def _landscape(base, slices, resolution):
    """The config's landscape table: the slices asked for (keeping the options a config file gave
    them), or the file's own; ``resolution`` set on every slice."""
    table = dict(base or {})
    if slices is not None:
        table = {
            **{key: table[key] for key in ("examples", "method") if key in table},
            **{name: dict(table.get(name) or {}) for name in slices},
        }
    if resolution is not None:
        if not any(name in table for name in _SLICES):
            raise click.UsageError(
                "--landscape-resolution needs --landscape (or a landscape table in --config)"
            )
        for name in _SLICES:
            if name in table:
                table[name] = {
                    **(table[name] or {}),
                    ("steps" if name == "line" else "resolution"): resolution,
                }
    return table or None


# dyntrace's own one-liners for catalog entries that are torch classes (whose docstrings describe
# torch's API, not the technique)
_DESCRIPTIONS = {
    ("activation", "sigmoid"): "Sigmoid σ(x) = 1/(1 + e^{−x}) ∈ (0, 1); saturates for |x| ≳ 5 (σ' ≤ 1/4).",
    ("activation", "tanh"): "tanh(x) ∈ (−1, 1), zero-centred; saturates for |x| ≳ 3 (tanh' ≤ 1).",
    ("activation", "relu"): "ReLU max(0, x); a unit whose input stays negative is dead (zero gradient).",
    ("activation", "leaky_relu"): "Leaky ReLU: x if x > 0 else αx (α = 0.01): no dead units.",
    ("activation", "elu"): "ELU: x if x > 0 else α(eˣ − 1) (α = 1): smooth, negative outputs down to −α.",
    ("activation", "gelu"): "GELU x·Φ(x), Φ the standard normal CDF (Hendrycks & Gimpel, 2016).",
    ("activation", "silu"): "SiLU / swish x·σ(x) (Ramachandran et al., 2017; β = 1).",
    ("activation", "softsign"): "Softsign x/(1 + |x|) ∈ (−1, 1): like tanh with polynomial tails.",
    ("dropout", "inverted"): (
        "Inverted dropout (torch's): in training drop with probability p and scale the rest by 1/(1 − p); "
        "identity in evaluation."
    ),
}


def _summary(kind: str, name: str) -> str:
    entry = catalog.get(kind, name)
    if (kind, name) in _DESCRIPTIONS and not getattr(entry, "description", None):
        return _DESCRIPTIONS[kind, name]
    return catalog.summary(kind, name).replace("``", "")  # reStructuredText literals read as plain words


def _canonical(kind: str) -> dict[str, str]:
    """alias → the name it stands for, among names of one kind that share an entry: the one
    spelled like the entry's own name (silu for SiLU, nesterov for nesterov()), else the first."""
    groups: dict[int, list[str]] = {}
    for name in catalog.names(kind):
        groups.setdefault(id(catalog.get(kind, name)), []).append(name)
    aliases = {}
    for names in groups.values():
        if len(names) > 1:
            own = catalog.normalize(getattr(catalog.get(kind, names[0]), "__name__", ""))
            main = own if own in names else names[0]
            aliases.update({name: main for name in names if name != main})
    return aliases


def _print_catalog(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    for kind in catalog.kinds():
        click.echo(f"{kind}:")
        aliases = _canonical(kind)
        for name in catalog.names(kind):
            text = f"alias of {aliases[name]}" if name in aliases else _summary(kind, name)
            click.echo(f"  {name:<17} {text}")
    ctx.exit()


@click.command("train")
@click.option(
    "--list",
    "list_catalog",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_catalog,
    help="Print every catalog entry by kind, with a one-line description (aliases marked), and exit.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML or JSON file with TrainConfig keys; options given here override it.",
)
@click.option("--dataset", callback=_name("dataset"), help="Data set (default digits).")
@click.option("--model", callback=_name("model"), help="mlp or cnn_digits.")
@click.option("--depth", type=click.IntRange(0), help="Hidden layers (cnn_digits: conv blocks).")
@click.option("--width", type=click.IntRange(1), help="Units per hidden layer.")
@click.option("--activation", callback=_name("activation"), help="Activation function.")
@click.option("--init", callback=_name("init"), help="Weight initialisation.")
@click.option("--norm", callback=_name("norm"), help="Normalisation layer.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), help="Dropout probability.")
@click.option("--optimizer", callback=_name("optimizer"), help="Optimizer.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Learning rate.")
@click.option("--schedule", callback=_name("schedule"), help="Learning-rate schedule.")
@click.option("--batch-size", type=click.IntRange(1), help="Minibatch size.")
@click.option("--epochs", type=click.IntRange(1), help="Passes over the training set.")
@click.option("--steps", type=click.IntRange(1), help="Optimizer steps (instead of epochs).")
@click.option("--l1", type=click.FloatRange(0), help="L1 penalty λ.")
@click.option("--l2", type=click.FloatRange(0), help="L2 penalty λ (½λΣW²).")
@click.option("--weight-decay", type=click.FloatRange(0), help="Decoupled weight decay λ.")
@click.option("--early-stopping", type=click.IntRange(1), help="Patience in epochs.")
@click.option("--augmentation", callback=_name("augmentation"), help="none, mixup, cutout or cutmix.")
@click.option("--scaling", callback=_name("scaling"), help="none, standardize or minmax.")
@click.option("--seed", type=click.IntRange(0), help="Random seed.")
@click.option("--every", type=click.IntRange(1), help="Record the probes every N steps.")
@click.option("--probes", callback=_probes, help="'all' or comma-separated probe names.")
@click.option(
    "--trajectory", type=click.IntRange(1), help="Keep the flat parameters every N steps (and first, last)."
)
@click.option(
    "--landscape",
    callback=_slices,
    is_flag=False,
    flag_value=",".join(_SLICES),
    metavar="[plane,line,trajectory]",
    help="After training, store these loss-landscape slices in the run file (alone: all three).",
)
@click.option(
    "--landscape-resolution",
    type=click.IntRange(2),
    metavar="N",
    help="Grid points per axis of the planes, points on the line (default 21).",
)
@click.option("--device", help="torch device (default cpu).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    callback=_assignments,
    metavar="KEY=VALUE",
    help="Any config key; KEY.SUB for options tables. Repeatable.",
)
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Run file to write (default run.h5).")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def command(config_file, assignments, progress, landscape, landscape_resolution, **options):
    """Train a model from the catalog and record it to a run file.

    With --landscape, the loss-landscape slices are computed after training on the validation
    split and stored in the run file (/landscape/plane, /landscape/line, /landscape/trajectory);
    draw them with `dyntrace landscape RUN.h5 -o DIR` (which can also recompute them).
    """
    from dyntrace.trainer import TrainConfig, train

    given = {key: value for key, value in options.items() if value is not None}
    try:
        base = TrainConfig.from_file(config_file).to_dict() if config_file else {}
        for key, value in assignments.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                value = {**base[key], **value}
            base[key] = value
        table = _landscape(base.get("landscape"), landscape, landscape_resolution)
        if table is not None:
            base["landscape"] = table
        config = TrainConfig.from_dict({**base, **given})
        check_config(config)
        path = train(config, progress=progress)
    except DyntraceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}")
