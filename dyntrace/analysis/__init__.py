"""Derived diagnostics of recorded runs: numpy only (no torch, no matplotlib).

Smoothing (EWMA with bias correction, the book's Kaiser smoothing, spike-preserving
decimation), plateau detection, minibatch and gradient noise, RAdam's rectification and the
variance of Adam's adaptive learning rate, curvature against the stability threshold,
statistics from additive summaries, and automatic diagnoses of a run.
"""

from dyntrace.analysis.curvature import (
    EdgeOfStability,
    NoiseScaleRecord,
    adam_threshold,
    edge_of_stability,
    measurement_cost,
    noise_scale_of_run,
    noise_scale_records,
    sgd_threshold,
    sharpness_of,
)
from dyntrace.analysis.diagnoses import (
    KINDS,
    Diagnosis,
    Thresholds,
    diagnose,
    gradient_flow,
    gradient_flow_ratio,
)
from dyntrace.analysis.noise import (
    MinibatchNoise,
    NoiseScale,
    NoiseScaleEstimate,
    gradient_noise_scale,
    minibatch_noise,
    noise_scale_estimate,
)
from dyntrace.analysis.plateaus import Plateau, find_plateaus, first_escape
from dyntrace.analysis.radam import (
    PsiVariance,
    is_rectified,
    psi_variance_approx,
    psi_variance_exact,
    rectification,
    rho_inf,
    rho_t,
    simulate_psi_variance,
)
from dyntrace.analysis.smoothing import Bands, decimate, decimate_bands, ewma, kaiser_smooth, moving_average
from dyntrace.analysis.stats import interval_means, roughness
from dyntrace.analysis.summaries import fraction, hist_mean, hist_quantiles, merge_windows, moments, rebin

__all__ = [
    # smoothing
    "ewma",
    "moving_average",
    "kaiser_smooth",
    "decimate",
    "decimate_bands",
    "Bands",
    # plateaus
    "find_plateaus",
    "Plateau",
    "first_escape",
    # noise
    "minibatch_noise",
    "MinibatchNoise",
    "gradient_noise_scale",
    "NoiseScale",
    "noise_scale_estimate",
    "NoiseScaleEstimate",
    # curvature
    "sgd_threshold",
    "adam_threshold",
    "edge_of_stability",
    "EdgeOfStability",
    "sharpness_of",
    "measurement_cost",
    "noise_scale_records",
    "noise_scale_of_run",
    "NoiseScaleRecord",
    # radam
    "rho_inf",
    "rho_t",
    "rectification",
    "is_rectified",
    "psi_variance_exact",
    "psi_variance_approx",
    "simulate_psi_variance",
    "PsiVariance",
    # stats
    "interval_means",
    "roughness",
    # summaries
    "moments",
    "fraction",
    "hist_quantiles",
    "hist_mean",
    "merge_windows",
    "rebin",
    # diagnoses
    "diagnose",
    "Diagnosis",
    "Thresholds",
    "KINDS",
    "gradient_flow",
    "gradient_flow_ratio",
]
