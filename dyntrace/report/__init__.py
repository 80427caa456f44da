"""One self-contained HTML page of one or more runs: ``dyntrace report RUN.h5 [RUN.h5 …] -o report.html``.

The page a person sends to a colleague: each run's description and config, its automatic
diagnoses (each linked to the figure and the steps that show it), the dashboard and every
figure the file supports, and the comparison figures when there are several runs. Figures
are PNGs inlined as ``data:`` URIs and the stylesheet is inline, so the page needs no network
and no other file. Reading side: never imports torch.
"""

from dyntrace.report.html import SHOWN_BY, build_report, write_report

__all__ = ["build_report", "write_report", "SHOWN_BY"]
