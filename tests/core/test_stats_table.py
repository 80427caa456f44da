"""Derived statistics come from one table (dyntrace.stats): a probe declares its own in its
layout, the file carries them, and the reader computes them without knowing the probe."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
import dyntrace.errors
from dyntrace.probes.weights import WeightsProbe
from dyntrace.stats import Ratio
from dyntrace.summaries import FieldSpec


class LargeWeights(WeightsProbe):
    """A new probe with one extra statistic: the fraction of weights with |w| > 0.5."""

    name = "large_weights"

    def setup(self, ctx):
        layout = super().setup(ctx)
        layout.fields.append(FieldSpec("large", "int64", description="elements with |w| > 0.5"))
        layout.stats.append(Ratio("frac_large", ("large",), ("count",), "weights with |w| > 0.5"))
        return layout

    def collect(self, ctx):
        fields = super().collect(ctx)
        if fields:
            fields["large"] = torch.stack([(p.detach().abs() > 0.5).sum() for p in ctx.params]).to(
                torch.float64
            )
        return fields


def _train(path, probes, steps=6, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    with dyntrace.Recorder(model, opt, path, probes=probes, every=2) as rec:
        for step in range(1, steps + 1):
            opt.zero_grad()
            x = torch.randn(32, 3)
            loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
            loss.backward()
            if step % 2 == 0:  # the weights a record step reads: before the update
                seen.append([p.detach().clone() for p in model.parameters()])
            opt.step()
            rec.log(loss=loss)
    return model, seen


def test_a_probe_declares_a_statistic_and_the_reader_computes_it(tmp_path):
    path = tmp_path / "r.h5"
    model, seen = _train(path, ["scalars", LargeWeights()])
    run = dyntrace.open_run(path)
    assert "frac_large" in run.stats("large_weights")
    steps, values = run.stat("large_weights", None, "frac_large")
    expected = [[(w.abs() > 0.5).double().mean().item() for w in record] for record in seen]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
    _, one = run.stat("large_weights", run.names("large_weights")[2], "frac_large")
    np.testing.assert_allclose(one, np.array(expected)[:, 2], atol=1e-12)
    with pytest.raises(ValueError, match="unknown stat 'frac_dead' for probe 'large_weights'"):
        run.stat("large_weights", None, "frac_dead")


def test_files_written_before_the_stats_attribute_read_the_same(tmp_path):
    path = tmp_path / "r.h5"
    _train(path, ["activations", "gradients"])
    run = dyntrace.open_run(path)
    now = {(p, s): run.stat(p, None, s)[1] for p in ("activations", "gradients") for s in run.stats(p)}
    assert {"frac_dead", "frac_saturated", "units"} <= {s for p, s in now if p == "activations"}
    run.close()
    with h5py.File(path, "r+") as f:  # as written before the stats attribute (and the checksums)
        del f["committed"], f.attrs["checksums"]
        for probe in ("activations", "gradients"):
            del f[f"probes/{probe}"].attrs["stats"]
    old = dyntrace.open_run(path)
    for (probe, stat), values in now.items():
        np.testing.assert_array_equal(old.stat(probe, None, stat)[1], values, err_msg=f"{probe} {stat}")


def test_a_declared_statistic_on_a_missing_field_is_a_one_line_error(tmp_path):
    path = tmp_path / "r.h5"
    _train(path, ["activations"])
    with h5py.File(path, "r+") as f:
        del f["committed"], f.attrs["checksums"]
        f["probes/activations"].attrs["stats"] = (
            '{"frac_x": {"numerator": ["nope"], "denominator": ["count"]}}'
        )
    with pytest.raises(dyntrace.errors.RunFileError, match="statistic 'frac_x' needs a field 'nope'"):
        dyntrace.open_run(path)
