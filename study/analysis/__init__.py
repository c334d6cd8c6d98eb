"""study.analysis: every statistic of a reader study, in one place.

``tables`` gives what the dashboard and ``python -m study stats`` show (selection ratios per reader and overall
with Wilson intervals, Tables III/IV, chi-square, each method against the original, breakdowns, reading times,
Fleiss' kappa, repeat agreement, "no preference" rates); the rest is the full analysis below.

Input is always the tidy one-row-per-query table (``study.export.tidy_votes`` or ``study.simulate.simulate_tidy``).
``full_report`` computes everything (selection ratios with Wilson and reader x case bootstrap intervals, models of
"restored preferred over original" with reader and case effects, position bias, a Luce ranking, agreement between
and within readers) as a JSON-serialisable dict; ``format_report`` prints it as plain-text tables. The exports
module writes the tidy table (CSV, Parquet) and an iMRMC input file.
"""

from .agreement import cohen_kappa_pairs, krippendorff_alpha_nominal, repeat_agreement
from .exports import (
    imrmc_frame, read_imrmc, read_tidy_csv, read_tidy_parquet, write_imrmc, write_tidy_csv, write_tidy_parquet,
)
from .ranking import luce_mm
from .report import format_report, full_report

__all__ = [
    "cohen_kappa_pairs", "format_report", "full_report", "imrmc_frame", "krippendorff_alpha_nominal", "luce_mm",
    "read_imrmc", "read_tidy_csv", "read_tidy_parquet", "repeat_agreement", "write_imrmc", "write_tidy_csv", "write_tidy_parquet",
]
