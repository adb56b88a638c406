"""Every input table of the pbc data contract (``docs/data-contracts.md``).

Codes follow the NHS Data Dictionary: admission method (ADMIMETH), patient
classification (CLASSPAT), first attendance, referral source, A&E department
type. Column order here is the order the generator writes and the docs show.
"""

from __future__ import annotations

from pbc.contracts.model import Column, DateOrder, Reference, Table

GROUP_TYPES = ("consortium", "locality", "cluster", "pcn", "lcp")
PROVIDER_TYPES = (
    "acute", "community", "mental_health", "social_care", "voluntary", "primary_care",
    "independent",
)
CONDITIONS = (
    "AF", "ASTHMA", "CANCER", "CHD", "CKD", "COPD", "DEM", "DM", "EPIL", "HF", "HYP", "MH",
    "STIA",
)
AGE_BANDS = (*(f"{a}-{a + 4}" for a in range(0, 90, 5)), "90+")

#: NHS Data Dictionary ADMISSION METHOD groups (docs/sources.md §5.1)
ELECTIVE_ADMISSION_METHODS = ("11", "12", "13")
EMERGENCY_ADMISSION_METHODS = ("21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28")
MATERNITY_ADMISSION_METHODS = ("31", "32")
OTHER_ADMISSION_METHODS = ("81", "82", "83")
ADMISSION_METHODS = (
    ELECTIVE_ADMISSION_METHODS + EMERGENCY_ADMISSION_METHODS + MATERNITY_ADMISSION_METHODS
    + OTHER_ADMISSION_METHODS
)
PATIENT_CLASSIFICATIONS = ("1", "2", "3", "4", "5")
FIRST_ATTENDANCE_CODES = ("1", "2", "3", "4")
REFERRAL_SOURCES = (
    "01", "02", "03", "04", "05", "06", "07", "10", "11", "12", "13", "14", "15", "16", "17",
    "92", "93", "97",
)
DEPARTMENT_TYPES = ("1", "2", "3", "4")
TOP_UP_CATEGORIES = ("children", "orthopaedic", "spinal", "neurosciences")
SOCIAL_CARE_SERVICES = (
    "home_care", "residential", "nursing", "day_care", "respite", "reablement", "direct_payment",
    "carers_support",
)

#: plausibility (issue 12): activity dates within this many years of the file's main
#: financial year; a spell's length of stay at most ten years (3,653 days)
PLAUSIBLE_YEARS = 5
MAX_LENGTH_OF_STAY = 3653

ODS_PRACTICE = r"^[A-Z][0-9]{5}$"
ICD10 = r"^[A-Z][0-9]{2}[0-9A-Z]{0,2}$"
HRG = r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{0,3}$"
TFC = r"^[0-9]{3}$"


def _code(name: str, description: str, example: str, **kw: object) -> Column:
    return Column(name, "code", description, example, **kw)  # type: ignore[arg-type]


def _commissioner_on_activity() -> Column:
    return _code(
        "commissioner_code", "Responsible commissioner as recorded on the activity (SUS). "
        "Used to place activity whose practice is blank or unknown; otherwise the practice's "
        "commissioner is used.", "QHM", required=False, nullable=True,
    )


def _practice_code_on_activity() -> Column:
    return _code(
        "practice_code", "Registered practice at the time of activity (ODS code). May be blank "
        "or unknown: such activity is priced and held as the commissioner's unattributed "
        "activity, never rejected for that alone.", "A81001", nullable=True,
    )


COMMISSIONERS = Table(
    "commissioners", "organisation", "Commissioners (PCT, CCG or ICB) that hold the budgets.",
    (
        _code("commissioner_code", "ODS code of the commissioner.", "QHM"),
        Column("commissioner_name", "text", "Name.", "NHS North East and North Cumbria ICB"),
    ),
    key="commissioner_code",
)

GROUPS = Table(
    "groups", "organisation",
    "Groups of practices that hold a budget together (consortium, locality, cluster, PCN, LCP).",
    (
        _code("group_code", "Code of the group (local).", "G01"),
        Column("group_name", "text", "Name.", "Stockton North locality"),
        _code("group_type", "Kind of group.", "locality", codes=GROUP_TYPES),
        _code("commissioner_code", "Commissioner the group belongs to.", "QHM"),
    ),
    key="group_code",
    references=(Reference("commissioner_code", "commissioners", "commissioner_code"),),
)

LOCAL_AUTHORITIES = Table(
    "local_authorities", "organisation", "Local authorities (ONS codes).",
    (
        _code("local_authority_code", "ONS code.", "E06000004", pattern=r"^E[0-9]{8}$"),
        Column("local_authority_name", "text", "Name.", "Stockton-on-Tees"),
    ),
    key="local_authority_code",
)

NEIGHBOURHOODS = Table(
    "neighbourhoods", "organisation",
    "Neighbourhoods within a local authority, used for joint needs assessment.",
    (
        _code("neighbourhood_code", "Local code of the neighbourhood.", "N0101"),
        _code("local_authority_code", "Local authority it lies in.", "E06000004"),
        Column("neighbourhood_name", "text", "Name.", "Norton", required=False, nullable=True),
    ),
    key="neighbourhood_code",
    references=(Reference("local_authority_code", "local_authorities", "local_authority_code"),),
)

PRACTICES = Table(
    "practices", "organisation", "GP practices: the registered list holders.",
    (
        _code("practice_code", "ODS code of the practice.", "A81001", pattern=ODS_PRACTICE),
        Column("practice_name", "text", "Name.", "The Densham Surgery"),
        _code("group_code", "Group the practice belongs to (see also practice_groups).", "G01"),
        _code("commissioner_code", "Commissioner of the practice.", "QHM"),
        _code("local_authority_code", "Local authority of the practice.", "E06000004",
              required=False, nullable=True),
        _code("neighbourhood_code", "Neighbourhood of the practice.", "N0101",
              required=False, nullable=True),
        Column("open_date", "date", "Date the practice opened.", "1974-04-01",
               required=False, nullable=True),
        Column("close_date", "date", "Date the practice closed, if it has.", "",
               required=False, nullable=True),
    ),
    key="practice_code",
    references=(
        Reference("group_code", "groups", "group_code"),
        Reference("commissioner_code", "commissioners", "commissioner_code"),
        Reference("local_authority_code", "local_authorities", "local_authority_code"),
        Reference("neighbourhood_code", "neighbourhoods", "neighbourhood_code"),
    ),
    date_orders=(DateOrder("open_date", "close_date"),),
)

PRACTICE_GROUPS = Table(
    "practice_groups", "organisation",
    "Practice moves between groups over time; overrides practices.group_code in its window.",
    (
        _code("practice_code", "Practice.", "A81001", pattern=ODS_PRACTICE),
        _code("group_code", "Group it belongs to from valid_from.", "G01"),
        Column("valid_from", "date", "First day of membership.", "2025-10-01"),
        Column("valid_to", "date", "Last day of membership (blank: open).", "",
               nullable=True),
    ),
    references=(
        Reference("practice_code", "practices", "practice_code"),
        Reference("group_code", "groups", "group_code"),
    ),
    date_orders=(DateOrder("valid_from", "valid_to"),),
    natural_key=("practice_code", "valid_from"),
    mandatory=False,
)

PROVIDERS = Table(
    "providers", "organisation", "Providers of care and their market forces factor.",
    (
        _code("provider_code", "ODS code of the provider.", "RTR"),
        Column("provider_name", "text", "Name.", "South Tees Hospitals NHS FT"),
        _code("provider_type", "Kind of provider.", "acute", codes=PROVIDER_TYPES),
        Column("mff_payment_index", "float", "Market forces factor payment index (>= 1.0).",
               "1.0461", minimum=1.0, maximum=2.0),
    ),
    key="provider_code",
)

PATIENTS = Table(
    "patients", "population", "Registered patients (pseudonymised).",
    (
        _code("patient_id", "Pseudonym of the patient (never an NHS number).", "P000000001"),
        _code("practice_code", "Registered practice.", "A81001"),
        _code("sex", "Sex.", "F", codes=("M", "F")),
        Column("age", "int", "Age in years at 1 April of the year.", "67",
               minimum=0, maximum=120),
        Column("imd_decile", "int", "Index of Multiple Deprivation decile (1 most deprived).",
               "3", required=False, nullable=True, minimum=1, maximum=10),
        _code("neighbourhood_code", "Neighbourhood of residence.", "N0101", required=False,
              nullable=True),
        Column("registered_from", "date", "Date of registration at the practice.",
               "2012-06-01", required=False, nullable=True),
        Column("registered_to", "date", "Date registration ended (blank: still registered).",
               "", required=False, nullable=True),
        Column("date_of_death", "date", "Date of death (blank: not known to have died); "
               "registration ends on it.", "", required=False, nullable=True),
    ),
    key="patient_id",
    references=(Reference("practice_code", "practices", "practice_code"),),
    date_orders=(DateOrder("registered_from", "registered_to"),
                 DateOrder("registered_from", "date_of_death")),
)

PATIENT_CONDITIONS = Table(
    "patient_conditions", "population", "Long-term conditions recorded for patients.",
    (
        _code("patient_id", "Pseudonym of the patient.", "P000000001"),
        _code("condition", "Condition (QOF register style).", "COPD", codes=CONDITIONS),
        Column("recorded_date", "date", "Date first recorded.", "2019-11-12",
               required=False, nullable=True),
    ),
    references=(Reference("patient_id", "patients", "patient_id"),),
    natural_key=("patient_id", "condition"),
)

LIST_SIZES = Table(
    "list_sizes", "population",
    "Registered list by practice, sex and age band (an alternative to patients).",
    (
        _code("practice_code", "Practice.", "A81001", pattern=ODS_PRACTICE),
        _code("sex", "Sex.", "M", codes=("M", "F")),
        _code("age_band", "Five-year age band.", "65-69", codes=AGE_BANDS),
        Column("patients", "int", "Registered patients.", "212", minimum=0),
    ),
    references=(Reference("practice_code", "practices", "practice_code"),),
    natural_key=("practice_code", "sex", "age_band"),
    mandatory=False,
)

APC_SPELLS = Table(
    "apc_spells", "activity", "Admitted patient care: hospital provider spells.",
    (
        _code("spell_id", "Unique spell identifier.", "S0000000001"),
        _code("patient_id", "Pseudonym of the patient.", "P000000001"),
        _practice_code_on_activity(),
        _commissioner_on_activity(),
        _code("provider_code", "Provider of the spell.", "RTR"),
        Column("admission_date", "date", "Date of admission.", "2025-05-03"),
        Column("discharge_date", "date", "Date of discharge (not before admission).",
               "2025-05-09"),
        _code("admission_method", "NHS ADMISSION METHOD: 11-13 elective; 21-25, 2A-2D, 28 "
              "emergency; 31-32 maternity; 81-83 other.", "21", codes=ADMISSION_METHODS),
        _code("patient_classification", "NHS PATIENT CLASSIFICATION: 1 ordinary, 2 day case, "
              "3 regular day, 4 regular night, 5 mothers and babies.", "1",
              codes=PATIENT_CLASSIFICATIONS),
        _code("hrg_code", "Spell HRG (HRG4).", "DZ65K", pattern=HRG),
        Column("age_on_admission", "int", "Age in years on admission.", "78",
               minimum=0, maximum=120),
        _code("primary_diagnosis", "Primary diagnosis, ICD-10 without the dot.", "J441",
              required=False, nullable=True, pattern=ICD10),
        _code("treatment_function_code", "Treatment function of the consultant.", "300",
              required=False, nullable=True, pattern=TFC),
        _code("top_up_category", "Specialised service top-up category, if any.", "",
              required=False, nullable=True, codes=TOP_UP_CATEGORIES),
    ),
    key="spell_id",
    references=(
        Reference("provider_code", "providers", "provider_code"),
        Reference("practice_code", "practices", "practice_code", enforce=False),
    ),
    date_orders=(DateOrder("admission_date", "discharge_date", max_days=MAX_LENGTH_OF_STAY),),
    activity_date="discharge_date",
    load_mode="append",
    plausible_years=PLAUSIBLE_YEARS,
)

OP_ATTENDANCES = Table(
    "op_attendances", "activity", "Outpatient appointments, attended or not.",
    (
        _code("attendance_id", "Unique attendance identifier.", "O0000000001"),
        _code("patient_id", "Pseudonym of the patient.", "P000000001"),
        _practice_code_on_activity(),
        _commissioner_on_activity(),
        _code("provider_code", "Provider.", "RTR"),
        Column("appointment_date", "date", "Date of the appointment.", "2025-06-17"),
        _code("treatment_function_code", "Treatment function code (TFC).", "110", pattern=TFC),
        _code("first_attendance", "1 first, 2 follow-up, 3 first by telephone/video, "
              "4 follow-up by telephone/video.", "1", codes=FIRST_ATTENDANCE_CODES),
        Column("attended", "bool", "Whether the patient attended (false: did not attend).",
               "true"),
        _code("referral_source", "NHS SOURCE OF REFERRAL (03 GP, 05 consultant other than "
              "A&E, ...).", "03", required=False, nullable=True, codes=REFERRAL_SOURCES),
        _code("hrg_code", "Outpatient procedure HRG, if a procedure was done.", "",
              required=False, nullable=True, pattern=HRG),
    ),
    key="attendance_id",
    references=(
        Reference("provider_code", "providers", "provider_code"),
        Reference("practice_code", "practices", "practice_code", enforce=False),
    ),
    activity_date="appointment_date",
    load_mode="append",
    plausible_years=PLAUSIBLE_YEARS,
)

AE_ATTENDANCES = Table(
    "ae_attendances", "activity", "Accident and emergency attendances.",
    (
        _code("attendance_id", "Unique attendance identifier.", "E0000000001"),
        _code("patient_id", "Pseudonym of the patient.", "P000000001"),
        _practice_code_on_activity(),
        _commissioner_on_activity(),
        _code("provider_code", "Provider.", "RTR"),
        Column("arrival_date", "date", "Date of arrival.", "2025-12-24"),
        _code("department_type", "A&E department type 1-4.", "1", codes=DEPARTMENT_TYPES),
        _code("hrg_code", "A&E HRG (VB01Z..VB11Z) or a local code.", "VB07Z"),
    ),
    key="attendance_id",
    references=(
        Reference("provider_code", "providers", "provider_code"),
        Reference("practice_code", "practices", "practice_code", enforce=False),
    ),
    activity_date="arrival_date",
    load_mode="append",
    plausible_years=PLAUSIBLE_YEARS,
)

PRESCRIBING = Table(
    "prescribing", "activity", "Practice prescribing by month and BNF presentation.",
    (
        _practice_code_on_activity(),
        Column("year_month", "year_month", "Month dispensed, YYYY-MM.", "2025-04"),
        _code("bnf_code", "BNF presentation code.", "0206020A0AAAAAA"),
        Column("bnf_name", "text", "BNF presentation name.", "Amlodipine 5mg tablets",
               required=False, nullable=True),
        Column("items", "int", "Prescription items.", "412", minimum=0),
        Column("actual_cost", "decimal", "Actual cost, pounds.", "1234.56", minimum=0),
    ),
    references=(Reference("practice_code", "practices", "practice_code", enforce=False),),
    natural_key=("practice_code", "year_month", "bnf_code"),
    activity_date="year_month",
    money="actual_cost",
    load_mode="append",
    plausible_years=PLAUSIBLE_YEARS,
)

SOCIAL_CARE_PACKAGES = Table(
    "social_care_packages", "activity", "Adult social care packages bought by a local "
    "authority.",
    (
        _code("package_id", "Unique package identifier.", "C000000001"),
        _code("local_authority_code", "Local authority that commissions it.", "E06000004"),
        _code("service_type", "Kind of service.", "home_care", codes=SOCIAL_CARE_SERVICES),
        Column("start_date", "date", "Start of the package.", "2025-07-01"),
        Column("end_date", "date", "End of the package (blank: open).", "", required=False,
               nullable=True),
        Column("weekly_cost", "decimal", "Cost per week, pounds.", "434.00", minimum=0),
        _code("patient_id", "Pseudonym of the person, where linked.", "P000000001",
              required=False, nullable=True),
    ),
    key="package_id",
    references=(Reference("local_authority_code", "local_authorities", "local_authority_code"),),
    date_orders=(DateOrder("start_date", "end_date"),),
    activity_date="start_date",
    money="weekly_cost",
    load_mode="append",
)

_PRICE = {"minimum": 0.0}

TARIFF_APC = Table(
    "tariff_apc", "tariff", "National tariff for admitted patient care, by HRG.",
    (
        _code("hrg_code", "HRG code.", "DZ65K", pattern=HRG),
        Column("hrg_name", "text", "HRG name.", "COPD with length of stay 1 day or more",
               required=False, nullable=True),
        Column("day_case_price", "decimal", "Day case spell price.", "", required=False,
               nullable=True, **_PRICE),  # type: ignore[arg-type]
        Column("ordinary_elective_price", "decimal", "Ordinary elective spell price.", "",
               required=False, nullable=True, **_PRICE),  # type: ignore[arg-type]
        Column("combined_elective_price", "decimal",
               "Combined day case / ordinary elective spell price.", "2102.00",
               required=False, nullable=True, **_PRICE),  # type: ignore[arg-type]
        Column("elective_trim_days", "int", "Ordinary elective long stay trim point.", "12",
               minimum=0),
        Column("non_elective_price", "decimal", "Non-elective spell price.", "1826.00",
               **_PRICE),  # type: ignore[arg-type]
        Column("non_elective_trim_days", "int", "Non-elective long stay trim point.", "19",
               minimum=0),
        Column("excess_bed_day_price", "decimal", "Per day long stay payment.", "247.00",
               **_PRICE),  # type: ignore[arg-type]
        _code("sse_applies", "Reduced short stay emergency tariff applicable (Y/N).", "Y",
              codes=("Y", "N")),
        Column("sse_price", "decimal", "Reduced short stay emergency tariff.", "548.00",
               required=False, nullable=True, **_PRICE),  # type: ignore[arg-type]
        Column("outpatient_procedure_price", "decimal", "Outpatient procedure tariff.", "",
               required=False, nullable=True, **_PRICE),  # type: ignore[arg-type]
    ),
    key="hrg_code",
)

TARIFF_OP = Table(
    "tariff_op", "tariff", "National tariff for outpatient attendances, by treatment function.",
    (
        _code("treatment_function_code", "Treatment function code.", "110", pattern=TFC),
        Column("first_attendance_price", "decimal", "First attendance price.", "168.00",
               **_PRICE),  # type: ignore[arg-type]
        Column("follow_up_price", "decimal", "Follow-up attendance price.", "84.00",
               **_PRICE),  # type: ignore[arg-type]
    ),
    key="treatment_function_code",
)

TARIFF_AE = Table(
    "tariff_ae", "tariff", "National tariff for A&E attendances, by HRG.",
    (
        _code("hrg_code", "A&E HRG.", "VB07Z"),
        Column("price", "decimal", "Price per attendance.", "148.00",
               **_PRICE),  # type: ignore[arg-type]
    ),
    key="hrg_code",
)

#: every input table, in load order (a table's references come before it)
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        COMMISSIONERS, GROUPS, LOCAL_AUTHORITIES, NEIGHBOURHOODS, PRACTICES, PRACTICE_GROUPS,
        PROVIDERS, PATIENTS, PATIENT_CONDITIONS, LIST_SIZES, TARIFF_APC, TARIFF_OP, TARIFF_AE,
        APC_SPELLS, OP_ATTENDANCES, AE_ATTENDANCES, PRESCRIBING, SOCIAL_CARE_PACKAGES,
    )
}

ACTIVITY_TABLES = tuple(n for n, t in TABLES.items() if t.kind == "activity")
