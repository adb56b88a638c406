"""Benchmarking statistics for pbc: PHE/UKHSA confidence intervals, standardisation,
funnel plots and SPC, vectorised over numpy arrays.

Every function takes numbers or numpy arrays (scalars in, scalars out) and returns named
results; funnel and SPC functions return pandas DataFrames. Confidence may be given as a
fraction (0.95) or a percentage (95); 0.9-1 is allowed. Formulas: pbc domain docs/sources.md §4.

Methods and sources
-------------------
* :func:`wilson_ci` — Wilson score interval (Wilson 1927; Newcombe & Altman 2000),
  PHEindicatormethods ``wilson_lower``/``wilson_upper``.
* :func:`byars_ci` — Byar's approximation (Breslow & Day 1987), PHEindicatormethods
  ``byars_lower``/``byars_upper``; lower limit NaN where negative.
* :func:`exact_poisson_ci` — exact Poisson limits via chi-squared (Garwood 1936).
* :func:`crude_rate` — PHE ``phe_rate``: exact limits below 10 events, Byar's otherwise.
* :func:`dsr`, :func:`dsr_by_group` — directly standardised rate with Dobson limits (Dobson
  et al. 1991), PHE ``phe_dsr``; European Standard Population 2013 (:data:`ESP2013`)
  built in; not calculated below 10 events.
* :func:`isratio`, :func:`israte` — indirect standardisation, PHE ``calculate_ISRatio`` /
  ``calculate_ISRate``; exact/Byar's limits of the observed count.
* :func:`funnel_proportion_limits`, :func:`funnel_proportion` — inverse-Wilson funnel limits
  (PHE ``sigma_adjustment``, Fingertips technical guidance).
* :func:`funnel_ratio`, :func:`funnel_ratio_limits`, :func:`funnel_rate`,
  :func:`funnel_rate_limits`, :func:`funnel_dsr`, :func:`poisson_funnel` — Poisson funnel
  limits by bisection (PHE ``poisson_funnel``, tolerance 1e-7), PHE significance labels.
* :func:`spiegelhalter_tau2` — overdispersion φ and τ² with 10%/90% winsorising
  (Spiegelhalter 2005; FunnelPlotR), used by every funnel's ``overdispersion=True``.
* :func:`xmr` — XmR chart with Making Data Count rules (NHSRplotthedots);
  :func:`xmr_panel` the same for many series of one length at once.

Significance labels: "High (0.001)", "High (0.025)", "Low (0.001)", "Low (0.025)",
"Not significant", and for DSR funnels "Not applicable for events less than 10 for dsrs".
"""

from pbc.stats.byars import byars_ci
from pbc.stats.crude_rate import RateResult, crude_rate
from pbc.stats.dsr import ESP2013, ESP2013_BANDS, DSRResult, dsr, dsr_by_group
from pbc.stats.exact_poisson import exact_poisson_ci
from pbc.stats.funnel_poisson import (
    DSR_NOT_APPLICABLE,
    funnel_dsr,
    funnel_rate,
    funnel_rate_limits,
    funnel_ratio,
    funnel_ratio_limits,
    poisson_funnel,
)
from pbc.stats.funnel_proportion import (
    HIGH_001,
    HIGH_025,
    LOW_001,
    LOW_025,
    NOT_SIGNIFICANT,
    SIGNIFICANCE_LEVELS,
    funnel_proportion,
    funnel_proportion_limits,
)
from pbc.stats.intervals import Interval
from pbc.stats.isr import ISRResult, israte, isratio
from pbc.stats.overdispersion import Overdispersion, spiegelhalter_tau2
from pbc.stats.wilson import wilson_ci
from pbc.stats.xmr import xmr, xmr_panel

__all__ = [
    "DSR_NOT_APPLICABLE",
    "ESP2013",
    "ESP2013_BANDS",
    "HIGH_001",
    "HIGH_025",
    "LOW_001",
    "LOW_025",
    "NOT_SIGNIFICANT",
    "SIGNIFICANCE_LEVELS",
    "DSRResult",
    "ISRResult",
    "Interval",
    "Overdispersion",
    "RateResult",
    "byars_ci",
    "crude_rate",
    "dsr",
    "dsr_by_group",
    "exact_poisson_ci",
    "funnel_dsr",
    "funnel_proportion",
    "funnel_proportion_limits",
    "funnel_rate",
    "funnel_rate_limits",
    "funnel_ratio",
    "funnel_ratio_limits",
    "israte",
    "isratio",
    "poisson_funnel",
    "spiegelhalter_tau2",
    "wilson_ci",
    "xmr",
    "xmr_panel",
]
