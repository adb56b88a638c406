"""The vocabulary of named activity filters indicator files may use.

Each filter says which activity it applies to; its meaning (NHS codes) is documented
here and implemented once in :mod:`pbc.indicators.compute`.
"""

from __future__ import annotations

#: filter name -> activity kinds it applies to
FILTERS: dict[str, tuple[str, ...]] = {
    # APC, by ADMISSION METHOD (NHS Data Dictionary, METHOD OF ADMISSION)
    "emergency": ("apc",),            # 21-25, 2A, 2B, 2C, 2D, 28
    "elective": ("apc",),             # 11-13
    "day_case": ("apc",),             # elective and patient classification 2
    "ordinary_elective": ("apc",),    # elective and patient classification 1
    "acsc_chronic": ("apc",),         # primary diagnosis on the chronic ACSC list (NHS OF 2.3.i)
    "acsc_acute": ("apc",),           # primary diagnosis on the acute ACSC list (NHS OF 3a)
    "readmission_30d": ("apc",),      # emergency admission within 30 days of a discharge
    # outpatients
    "first": ("op",),                 # first attendance codes 1 and 3
    "follow_up": ("op",),             # follow-up codes 2 and 4
    "attended": ("op",),              # attended = true
    "gp_referred": ("op",),           # referral source 03
    "consultant_referred": ("op",),   # referral source 05
    # A&E
    "type_1_2": ("ae",),              # department types 1 and 2
    # priced activity: service_line:<line>
    "service_line": ("priced",),
}

#: fields that may be summed, by activity kind
SUM_FIELDS: dict[str, tuple[str, ...]] = {
    "apc": ("excess_bed_days",),
    "prescribing": ("actual_cost", "items"),
    "priced": ("price",),
}
