"""The record step's pipeline: probes collect on the device, ranks combine, one transfer, write.

:class:`RecordStep` owns the probes and what travels from them to the writer; the
:class:`~dyntrace.recorder.Recorder` owns the lifecycle (hooks, schedule, arming) and calls
:meth:`RecordStep.record` once per record step. Every probe method runs guarded: a probe that
raises is switched off with one warning and training goes on.

Order of one record step (the same on every rank of a distributed run)::

    collect (each probe) → combine across ranks (coordinator) → statics (first record, or
    changed) → ctx scalars → ONE to_host transfer → checks → writer
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dyntrace import stats
from dyntrace.scalar_log import ScalarLog
from dyntrace.summaries import to_host

__all__ = ["RecordBatch", "RecordStep"]


@dataclass
class RecordBatch:
    """What one record step sends to the host, by kind (all tensors still on the device).

    ``fields`` maps a file group (a probe's name, or its per-rank copy) to its per-record
    fields; ``statics`` maps a probe's name to its static fields (bin edges, unit counts),
    present until written once; ``checks`` holds the distributed consistency checks. The
    pending scalar log travels with them (see :meth:`ScalarLog.tensors`).
    """

    fields: dict[str, dict] = field(default_factory=dict)
    statics: dict[str, dict] = field(default_factory=dict)
    checks: dict = field(default_factory=dict)

    def parts(self) -> dict:
        """Owners and their tensors, for :func:`dyntrace.summaries.to_host`."""
        parts = {("fields", group): fields for group, fields in self.fields.items()}
        parts.update({("static", name): fields for name, fields in self.statics.items()})
        if self.checks:
            parts[("checks",)] = self.checks
        return parts


class RecordStep:
    """The probes of a run and the path of their summaries to the file.

    Args:
        probes: the probe objects; :meth:`layouts` asks each for its layout.
        ctx: the :class:`~dyntrace.probes.base.RecordContext` every probe method gets.
        coordinator: the distributed coordinator (``Local`` in a single process).
    """

    def __init__(self, probes, ctx, coordinator):
        self.probes = list(probes)
        self.ctx = ctx
        self.dist = coordinator
        self.groups: set[str] = set()  # probes (and per-rank copies) with a layout in the file
        self.writer = None
        self.scalars: ScalarLog | None = None
        self._statics_written: set[str] = set()

    def layouts(self, param_names) -> dict:
        """Each probe's layout (with its options and declared statistics as attributes);
        a probe with no layout records nothing, one that fails is switched off."""
        layouts = {}
        for probe in list(self.probes):
            layout = self.guard(probe, "setup")
            if layout is not None:
                layout.attrs.setdefault("options", json.dumps(probe.options(), default=str))
                if layout.stats:
                    layout.attrs["stats"] = stats.encode(layout.stats)
                layouts[probe.name] = layout
        self.probes, layouts = self.dist.setup(self.probes, layouts, param_names)
        self.groups = set(layouts)
        return layouts

    def connect(self, writer, scalars: ScalarLog) -> None:
        """Where records go: the run's writer, and the log of pending scalars."""
        self.writer, self.scalars = writer, scalars

    # -- guarded probe calls -----------------------------------------------------------------

    def guard(self, probe, method: str, *args):
        """Call a probe method; on failure warn once, drop the probe, keep training."""
        try:
            return getattr(probe, method)(self.ctx, *args)
        except Exception as exc:
            self.switch_off(probe, f"failed in {method} ({exc!r})")
            return None

    def each(self, method: str) -> list:
        """:meth:`guard` of every probe in turn; their results."""
        return [self.guard(probe, method) for probe in list(self.probes)]

    def switch_off(self, probe, why: str) -> None:
        self.ctx.warn_once((probe.name, "off"), f"probe {probe.name!r} {why}; it is switched off")
        if probe in self.probes:
            self.probes.remove(probe)

    def probe_named(self, group: str):
        name = group.split("@", 1)[0]  # a per-rank copy "activations@rank1" is its probe's
        return next((p for p in self.probes if p.name == name), None)

    # -- the record step ---------------------------------------------------------------------

    def record(self, step: int) -> None:
        """Collect on the device, combine across ranks, one transfer, write."""
        self.dist.before_collect(self.probes)
        batch = RecordBatch()
        for probe in list(self.probes):
            fields = self.guard(probe, "collect")
            if fields:
                batch.fields[probe.name] = fields
        if self.dist.communicates:
            combined = self.dist.combine(step, batch.fields)  # the record step's collectives
            if combined is None:  # another rank: its part is done
                return
            batch.fields, events, batch.checks = combined
            self.scalars.extend(events)
        elif not self.dist.writes:  # "rank0" mode, another rank: nothing to do
            return
        batch.statics = self._statics_due()
        for name, value in self.ctx.scalars.items():
            self.scalars.add(step, name, value)
        self.ctx.scalars = {}
        host = self.transfer(batch, step)
        self.scalars.extend(self.dist.after_transfer(step, host.get(("checks",), {})))
        self._write(batch, host, step)

    def _statics_due(self) -> dict:
        """Static fields of the probes whose statics are not in the file yet (or changed)."""
        due = {}
        for probe in list(self.probes):
            if probe.name in self.groups and (
                probe.name not in self._statics_written or probe.statics_changed
            ):
                statics = self.guard(probe, "static")
                if statics:
                    due[probe.name] = statics
                elif statics is not None:  # nothing static: its records need not wait
                    self._statics_written.add(probe.name)
                    probe.statics_changed = False
        return due

    def _write(self, batch: RecordBatch, host: dict, step: int) -> None:
        for name in batch.statics:
            probe = self.probe_named(name)
            if probe is not None and ("static", name) in host:
                self.writer.add_static(name, host[("static", name)])
                self._statics_written.add(name)
                probe.statics_changed = False
        for group in batch.fields:
            probe = self.probe_named(group)
            fields = host.get(("fields", group))
            if probe is None or fields is None or group not in self.groups:
                continue  # no layout: e.g. no activation module matched, nothing to write
            if probe.name not in self._statics_written:
                continue  # its statics are not in the file yet: a record without edges is unreadable
            fields = self.guard(probe, "check", fields)
            if fields is not None:
                self.writer.add_record(group, step, fields)

    def transfer(self, batch: RecordBatch, step: int) -> dict:
        """The one device-to-host transfer of a record step (its pending scalars included)."""
        parts = batch.parts()
        parts.update(self.scalars.tensors())
        try:
            host, failed = to_host(parts)  # <- the record step's host-device synchronisation
        except Exception as exc:  # not a probe's fault; this record is lost, later ones are not
            self.scalars.drop()
            raise RuntimeError(f"moving the summaries to the host failed: {exc}") from exc
        for owner, exc in failed.items():
            if owner[0] in ("fields", "static"):
                probe = self.probe_named(owner[1])
                if probe is not None:
                    self.switch_off(probe, f"returned summaries that cannot be moved to the host ({exc!r})")
            elif owner[0] == "checks":
                self.ctx.warn_once("checks", f"the distributed checks of step {step} failed: {exc!r}")
        self.scalars.write(host, {k: v for k, v in failed.items() if k[0] == "scalar"})
        return host

    def flush_scalars(self, step: int) -> None:
        """Move the pending logged tensors (only them) to the host and write them."""
        try:
            host, failed = to_host(self.scalars.tensors())
            self.scalars.write(host, failed)
        except Exception as exc:  # the recorder never kills training
            dropped = self.scalars.drop()
            self.ctx.warn_once(
                "flush", f"logging scalars at step {step} failed ({dropped} values dropped): {exc}"
            )

    def combine_scalars(self, step: int) -> None:
        """A scalars-only collective (``reduce=`` values), when no record step comes soon enough."""
        combined = self.dist.combine(step, None)
        if combined is not None:
            self.scalars.extend(combined[1])
