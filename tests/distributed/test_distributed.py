"""Recording and landscapes under torch.distributed: two gloo processes on the CPU.

One spawn runs every recording mode and the distributed landscape (module fixture); the
tests compare its files with single-process runs over the concatenated global batch.
"""

import ddp_workers as W  # beside this file (pytest puts the folder on sys.path; spawn passes it on)
import numpy as np
import pytest
import torch
from torch import nn

import dyntrace
from dyntrace.landscape import line as single_line
from dyntrace.landscape import plane as single_plane

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def start(fn, *args):
    """Two worker processes, forked: they inherit this process's imports (torch, and the
    torch._dynamo that DDP imports, seconds each when spawned afresh). Safe here: the test
    process runs torch on one thread (tests/conftest.py) and holds no process group. Waited
    for with a deadline (:func:`ddp_workers.run_workers`)."""
    W.run_workers(fn, *args)


ACTIVATION_STATS = (
    "count",
    "sum",
    "sumsq",
    "min",
    "max",
    "zero",
    "hist_count",
    "saturated",
    "dead",
    "dead_persistent",
)
MOMENTS = ("count", "sum", "sumsq", "min", "max", "zero", "nonfinite")


@pytest.fixture(scope="module")
def spawned(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    start(W.record_worker, str(out), str(out / "store"))
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same training in one process on the global batch (loss = mean over it)."""
    out = tmp_path_factory.mktemp("single")
    x, y = W.global_batch()
    model = W.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=W.LR, momentum=0.9)
    with dyntrace.Recorder(model, opt, out / "single.h5", every=W.EVERY, probes=W.PROBES) as rec:
        W.train(model, opt, rec, x, y)
    return out / "single.h5", model


def _field(run, probe, field):
    return run.field(probe, field)[1].astype(np.float64)


def test_one_file_written_by_rank_0_with_constant_collectives(spawned):
    assert sorted(p.name for p in spawned.glob("*.h5")) == [
        "no_ddp.h5",
        "per_rank.h5",
        "rank0.h5",
        "reduce.h5",
        "scalars.h5",
    ]
    r0, r1 = np.load(spawned / "rank0.npz"), np.load(spawned / "rank1.npz")
    records = W.STEPS // W.EVERY
    # one combine per record step plus one at close; none on the other steps; none in rank0 mode
    assert r0["calls"].tolist() == r1["calls"].tolist() == [records + 1, records + 1, 0]


def test_reduced_scalars_without_record_steps(spawned):
    assert int(np.load(spawned / "rank0.npz")["scalar_calls"]) == 2  # at 4096 pending values, and at close
    with dyntrace.open_run(spawned / "scalars.h5") as run:
        _, v = run.scalar("v")
        np.testing.assert_array_equal(v, np.arange(5000) + 0.5)  # mean of rank + i over ranks 0, 1
        assert run.scalar("top")[1].tolist() == [1.0] and run.scalar("low")[1].tolist() == [0.0]
        assert run.scalar("total")[1].tolist() == [2.0]


def test_log_reduce_is_checked_and_harmless_in_one_process(tmp_path):
    model = W.build_model()
    opt = torch.optim.SGD(model.parameters(), lr=W.LR)
    with dyntrace.Recorder(model, opt, tmp_path / "one.h5", every=1, probes=[]) as rec:
        with pytest.raises(ValueError, match="Invalid reduce: 'avg'"):
            rec.log(loss=1.0, reduce="avg")
        rec.log(loss=2.0, reduce="mean")
    with dyntrace.open_run(tmp_path / "one.h5") as run:
        assert run.scalar("loss")[1].tolist() == [2.0] and "distributed" not in run.meta
    with pytest.raises(ValueError, match="Invalid distributed: 'all'"):
        dyntrace.Recorder(model, opt, tmp_path / "two.h5", distributed="all")


def test_reduced_activations_equal_the_global_batch(spawned, reference):
    single_path, _ = reference
    with dyntrace.open_run(single_path) as single, dyntrace.open_run(spawned / "reduce.h5") as ddp:
        assert ddp.layers == single.layers == ["1", "3"]  # the wrapped module's names: no "module."
        assert ddp.params == single.params and not any(n.startswith("module.") for n in ddp.params)
        np.testing.assert_array_equal(ddp.record_steps, single.record_steps)
        np.testing.assert_array_equal(ddp.record_steps, [1, 3, 5])
        for field in ACTIVATION_STATS:
            np.testing.assert_allclose(
                _field(ddp, "activations", field),
                _field(single, "activations", field),
                rtol=1e-6,
                atol=1e-9,
                err_msg=field,
            )
        np.testing.assert_array_equal(
            _field(ddp, "activations", "hist"), _field(single, "activations", "hist")
        )
        np.testing.assert_array_equal(
            _field(ddp, "activations", "edges"), _field(single, "activations", "edges")
        )
        assert ddp.stat("activations", "1", "dead")[1].tolist() == [4, 4, 4]  # unit 5 lives on rank 1's shard
        for stat in ("mean", "std", "frac_zero", "frac_dead"):
            np.testing.assert_allclose(
                ddp.stat("activations", "1", stat)[1], single.stat("activations", "1", stat)[1], rtol=1e-6
            )
        assert ddp.meta["distributed"]["mode"] == "reduce" and ddp.meta["model_class"] == "Sequential"


def test_gradients_and_weights_equal_the_single_process(spawned, reference):
    single_path, _ = reference
    with dyntrace.open_run(single_path) as single, dyntrace.open_run(spawned / "reduce.h5") as ddp:
        for probe in ("gradients", "weights"):
            np.testing.assert_array_equal(ddp.steps(probe), single.steps(probe))
            for field in MOMENTS:
                # float32 gradients summed in another order: equal to rounding, scaled by the field
                expected = _field(single, probe, field)
                atol = 1e-6 * np.nanmax(np.abs(expected[np.isfinite(expected)]), initial=0.0)
                np.testing.assert_allclose(
                    _field(ddp, probe, field), expected, rtol=1e-5, atol=atol, err_msg=f"{probe}/{field}"
                )
            hist_ddp, hist_single = _field(ddp, probe, "hist"), _field(single, probe, "hist")
            assert (
                np.abs(hist_ddp - hist_single).sum() <= 0.001 * hist_single.sum()
            )  # a value on a bin edge may flip
        for name in ("loss", "grad_norm", "param_norm"):
            steps, values = ddp.scalar(name)
            single_steps, single_values = single.scalar(name)
            np.testing.assert_array_equal(steps, single_steps)
            np.testing.assert_allclose(
                values, single_values, rtol=1e-5
            )  # loss: the mean of the ranks' losses


def test_per_rank_groups_show_each_shard(spawned):
    with (
        dyntrace.open_run(spawned / "per_rank.h5") as run,
        dyntrace.open_run(spawned / "reduce.h5") as reduced,
    ):
        assert run.meta["distributed"]["rank_groups"] == ["activations@rank0", "activations@rank1"]
        for field in ("count", "sum", "hist"):
            parts = _field(run, "activations@rank0", field) + _field(run, "activations@rank1", field)
            np.testing.assert_allclose(parts, _field(run, "activations", field), rtol=1e-12)
            np.testing.assert_allclose(
                _field(run, "activations", field), _field(reduced, "activations", field), rtol=1e-12
            )
        np.testing.assert_array_equal(
            _field(run, "activations", "min"),
            np.minimum(_field(run, "activations@rank0", "min"), _field(run, "activations@rank1", "min")),
        )
        # dead = dead on every shard: units 0-3 are dead everywhere, unit 5 on rank 0's shard only
        dead = run.stat("activations", "1", "dead")[1]
        dead0, dead1 = (run.stat(f"activations@rank{r}", "1", "dead")[1] for r in (0, 1))
        assert dead.tolist() == [4, 4, 4]
        assert dead0[:2].tolist() == [5, 5] and dead1[:2].tolist() == [4, 4]
        assert np.all(dead <= np.minimum(dead0, dead1)) and np.all(dead0 >= dead + 1)
        # dead for dead_patience = 3 consecutive records: from the third record on
        assert run.field("activations", "dead_persistent", "1")[1].tolist() == [0, 0, 4]
        assert run.field("activations@rank0", "dead_persistent", "1")[1].tolist() == [0, 0, 5]
        _, loss = run.scalar("loss")
        _, loss0 = run.scalar("loss@rank0")
        _, loss1 = run.scalar("loss@rank1")
        np.testing.assert_allclose(loss, (loss0 + loss1) / 2, rtol=1e-12)
        assert not np.allclose(loss0, loss1)


def test_rank0_mode_records_rank_0s_shard(spawned):
    with (
        dyntrace.open_run(spawned / "rank0.h5") as run,
        dyntrace.open_run(spawned / "per_rank.h5") as per_rank,
    ):
        assert (
            run.stat("activations", "1", "count")[1].tolist() == [W.SHARD * 32] * 3
        )  # half the global batch
        assert "activations@rank0" not in run.probes and run.meta["distributed"]["mode"] == "rank0"
        # the same shard, the same weights (hist differs: in rank0 mode the ReLU's bins come
        # from rank 0's shard alone, in the others from the global batch)
        for field in ACTIVATION_STATS:
            np.testing.assert_array_equal(
                _field(run, "activations", field), _field(per_rank, "activations@rank0", field), err_msg=field
            )


def test_without_ddp_differing_gradients_are_flagged(spawned):
    assert int(np.load(spawned / "rank0.npz")["mismatch"]) == 1  # warned once
    with dyntrace.open_run(spawned / "no_ddp.h5") as run:
        steps, counts = run.scalar("dist/grad_mismatch")
        assert steps.tolist() == [1, 3, 5] and counts.tolist() == [6, 6, 6]


def test_landscape_on_two_ranks_equals_one(spawned):
    r0 = np.load(spawned / "rank0.npz")
    assert bool(np.load(spawned / "rank1.npz")["planes_none"])
    assert bool(r0["refused"]) and bool(np.load(spawned / "rank1.npz")["refused"])  # different batches
    x, y = W.global_batch()
    model, batch = W.build_model(), (x[0], y[0])
    single = single_plane(
        model, nn.functional.mse_loss, batch, resolution=(7, 5), span=0.5, seed=3, method="sequential"
    )
    np.testing.assert_array_equal(r0["sequential"], single.loss)
    np.testing.assert_allclose(r0["vmap"], single.loss, rtol=1e-6)
    np.testing.assert_array_equal(r0["x"], single.x)
    np.testing.assert_array_equal(r0["y"], single.y)
    assert int(r0["meta_ranks"]) == 2
    with dyntrace.open_run(spawned / "reduce.h5") as run:
        stored = run.landscape("plane")
        np.testing.assert_array_equal(stored.loss, single.loss)
        assert stored.meta["ranks"] == 2 and stored.meta["points_per_rank"] == [17, 18]
    start, end = W.build_model().state_dict(), {k: v + 0.1 for k, v in W.build_model().state_dict().items()}
    line = single_line(model, nn.functional.mse_loss, batch, start, end, steps=9, method="sequential")
    np.testing.assert_array_equal(r0["line"], line.loss)


@pytest.mark.parametrize("failing_rank", [0, 1])
def test_a_rank_that_raises_leaves_a_readable_file(tmp_path, failing_rank):
    with pytest.raises(Exception):
        start(W.failing_worker, str(tmp_path), str(tmp_path / "store"), failing_rank)
    with dyntrace.open_run(tmp_path / "failed.h5") as run:
        assert run.record_steps.tolist() == [1, 3]
        assert run.stat("activations", "1", "dead")[1].tolist() == [4, 4]
        assert run.scalar("grad_norm")[0].tolist() == [1, 3]
        assert run.scalar("loss")[0].tolist() == [1, 2]  # reduced with the record at step 3
        if failing_rank == 0:  # the writing rank left its with-block: closed, without a collective
            assert run.closed_cleanly
