"""Indicative practice budgets: needs, fair shares, pace of change, caps, phasing, explain.

Pure core: frames and values in and out. The only file readers are
:func:`read_policy` (budget policy TOML) and :func:`read_nhse_file` (NHS England
weighted populations) and :func:`read_group_file` (a list of practice codes).
Money is integer pence throughout (rounding rule in :mod:`pbc.budgets.money`).
"""

from pbc.budgets.explain import Explanation, Step, explain
from pbc.budgets.fair_shares import (
    AGE_BANDS,
    FairShareError,
    FairShareInputs,
    PersonModel,
    astro_pu_weights,
    band_costs,
    derive_cost_weights,
    fair_share_populations,
    fit_person_model,
    list_sizes_from_patients,
    need_index_from_conditions,
    need_index_from_nhse,
    nhse_weighted_population,
    person_based,
    prescribing_units,
    weighted_capitation,
)
from pbc.budgets.groups import group_budgets, membership_by_month
from pbc.budgets.indicative import (
    BUDGET_COLUMNS,
    BudgetError,
    BudgetResult,
    budgets_in_pounds,
    prior_spend_by_practice,
    set_budgets,
)
from pbc.budgets.needs import (
    COMPONENT_COLUMNS,
    COMPONENTS,
    NHSEFileError,
    PracticeGroupError,
    icb_indices,
    needs_indices,
    packaged_nhse_file,
    read_group_file,
    read_nhse_file,
)
from pbc.budgets.phasing import phase_budgets, seasonal_profile
from pbc.budgets.policy import SERVICE_LINES, BudgetPolicy, PolicyError, parse_policy, read_policy

__all__ = [
    "AGE_BANDS", "BUDGET_COLUMNS", "COMPONENTS", "COMPONENT_COLUMNS", "SERVICE_LINES",
    "BudgetError", "BudgetPolicy", "BudgetResult", "Explanation", "FairShareError",
    "FairShareInputs", "NHSEFileError", "PersonModel", "PolicyError", "PracticeGroupError",
    "Step", "astro_pu_weights", "band_costs", "budgets_in_pounds", "derive_cost_weights", "explain",
    "fair_share_populations", "fit_person_model", "group_budgets", "icb_indices",
    "list_sizes_from_patients", "membership_by_month", "need_index_from_conditions",
    "need_index_from_nhse", "needs_indices", "nhse_weighted_population", "packaged_nhse_file",
    "parse_policy", "person_based", "phase_budgets", "prescribing_units",
    "prior_spend_by_practice", "read_group_file",
    "read_nhse_file", "read_policy", "seasonal_profile", "set_budgets", "weighted_capitation",
]
