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
    "day_case_or_ordinary": ("apc",),  # elective and patient classification 1 or 2 (not
                                       # regular day/night attenders 3, 4; nor 5)
    "new_admission": ("apc",),        # first provider spell of a continuous inpatient spell
                                      # (a transfer is not a new admission)
    "ordinary_elective": ("apc",),    # elective and patient classification 1
    "acsc_chronic": ("apc",),         # primary diagnosis on the chronic ACSC list (NHS OF 2.3.i)
    "acsc_acute": ("apc",),           # primary diagnosis on the acute ACSC list (NHS OF 3a)
    "index_spell": ("apc",),          # a continuous inpatient spell that is a readmission
                                      # index spell (NHS OF 3b exclusions the data can show)
    "readmitted_30d": ("apc",),       # ... followed by an emergency admission 0-29 days
                                      # after its discharge
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
