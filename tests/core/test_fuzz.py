"""Damaged run files through the commands: never a hang, never a traceback, exit 0 only for a
valid file (a seeded fuzz; the larger run is ``benchmarks/fuzz_files.py``)."""

import fuzzing  # tests/core/fuzzing.py

PER_KIND = 60
SEED = 14
PLOT_EVERY = 6  # plot and compare run on every 6th variant of each kind (10 of 60); info on all


def _commands(variant):
    index = int(variant.id.split("-")[1])
    return fuzzing.COMMANDS if index % PLOT_EVERY == 0 else ("info", "info_json")


def test_damaged_run_files_fail_in_one_line_and_valid_ones_read(tmp_path):
    bases = fuzzing.make_bases(str(tmp_path / "bases"))
    variants = fuzzing.make_variants(bases, str(tmp_path / "variants"), PER_KIND, SEED)
    outcomes = fuzzing.run(
        variants, bases=bases, workers=2, deadline=60.0, commands_for=_commands, light_valid_plots=True
    )
    problems = [f"{o.variant.id} ({o.variant.what}): {'; '.join(o.problems)}" for o in outcomes if o.problems]
    assert not problems, "\n".join(problems)

    table = fuzzing.summary(outcomes)
    assert sorted(table) == sorted(fuzzing.KINDS)
    for kind, row in table.items():
        assert row["variants"] == PER_KIND and row["hangs"] == 0 and row["tracebacks"] == 0, (kind, row)
        assert (
            row["ran_info"] == row["ran_info_json"] == PER_KIND
            and row["ran_plot"] == row["ran_compare"] == PER_KIND // PLOT_EVERY
        )
    # the oracle is not vacuous: byte damage that hit unused bytes left valid files, which read
    # (exit 0 everywhere, checked above), and most byte damage did not
    valid = sum(table[kind]["valid"] for kind in fuzzing.BYTE_KINDS)
    assert 0 < valid < len(fuzzing.BYTE_KINDS) * PER_KIND // 2
    assert all(table[kind]["valid"] == 0 for kind in fuzzing.KINDS if kind not in fuzzing.BYTE_KINDS)
