"""Calibration constants for the synthetic economy (sources: docs/calibration.md)."""

from __future__ import annotations


#: England registered population by single year of age 0..100 (relative weights), shaped on
#: ONS mid-year estimates (Census 2021: 17.4% aged 0-14, 18.4% 65+, 2.3% 85+).
def age_weights() -> list[float]:
    w = []
    for a in range(101):
        if a < 15:
            v = 1.00
        elif a < 20:
            v = 1.10
        elif a < 30:
            v = 1.30
        elif a < 40:
            v = 1.38
        elif a < 50:
            v = 1.30
        elif a < 60:
            v = 1.36
        elif a < 65:
            v = 1.18
        elif a < 75:
            v = 1.02
        elif a < 85:
            v = 0.68 - (a - 75) * 0.03
        else:
            v = max(0.40 * (0.86 ** (a - 85)), 0.005)
        w.append(v)
    return w


#: emergency admissions per 1,000 registered patients by age band (docs/calibration.md §2: ~95-101
#: overall; 420 at 85+; Devon predictive model and Pereira Gray et al.)
EMERGENCY_RATE = [(0, 5, 75.0), (5, 15, 30.0), (15, 45, 60.0), (45, 65, 75.0), (65, 75, 140.0),
                  (75, 85, 250.0), (85, 121, 420.0)]
#: elective admissions (ordinary + day case) per 1,000 by age band (≈180 overall)
ELECTIVE_RATE = [(0, 5, 40.0), (5, 15, 35.0), (15, 45, 90.0), (45, 65, 230.0), (65, 75, 420.0),
                 (75, 85, 480.0), (85, 121, 300.0)]
#: outpatient first attendances (appointments incl. DNAs) per 1,000 by age band (≈620 overall;
#: follow-ups ≈2.2 per first, docs/calibration.md §3)
OP_FIRST_RATE = [(0, 5, 450.0), (5, 15, 300.0), (15, 45, 480.0), (45, 65, 700.0),
                 (65, 75, 1000.0), (75, 85, 1150.0), (85, 121, 900.0)]
#: A&E attendances per 1,000 by age band (≈417 overall; docs/calibration.md §4)
AE_RATE = [(0, 5, 600.0), (5, 15, 300.0), (15, 45, 420.0), (45, 65, 330.0), (65, 75, 380.0),
           (75, 85, 600.0), (85, 121, 1000.0)]

#: long-term conditions: (code, prevalence by age band as (lo, hi, %), relative risk of an
#: emergency admission). QOF-style prevalences (docs/calibration.md §6).
CONDITIONS = [
    ("HYP", [(0, 30, 0.3), (30, 45, 4.0), (45, 65, 17.0), (65, 75, 38.0), (75, 121, 55.0)], 1.1),
    ("DM", [(0, 30, 0.4), (30, 45, 3.5), (45, 65, 10.0), (65, 75, 17.0), (75, 121, 19.0)], 1.4),
    ("CHD", [(0, 45, 0.1), (45, 65, 3.0), (65, 75, 10.0), (75, 121, 17.0)], 1.4),
    ("COPD", [(0, 40, 0.05), (40, 65, 2.0), (65, 75, 6.0), (75, 121, 8.5)], 2.0),
    ("ASTHMA", [(0, 15, 5.0), (15, 121, 6.5)], 1.3),
    ("AF", [(0, 50, 0.1), (50, 65, 1.2), (65, 75, 5.0), (75, 121, 12.0)], 1.3),
    ("HF", [(0, 50, 0.05), (50, 65, 0.6), (65, 75, 2.5), (75, 121, 7.0)], 2.5),
    ("CKD", [(0, 40, 0.1), (40, 65, 1.5), (65, 75, 7.0), (75, 121, 17.0)], 1.5),
    ("CANCER", [(0, 40, 0.5), (40, 65, 3.0), (65, 75, 8.0), (75, 121, 11.0)], 1.8),
    ("DEM", [(0, 65, 0.05), (65, 75, 1.2), (75, 85, 4.5), (85, 121, 13.0)], 1.8),
    ("STIA", [(0, 45, 0.1), (45, 65, 1.2), (65, 75, 4.0), (75, 121, 8.0)], 1.4),
    ("EPIL", [(0, 121, 0.8)], 1.5),
    ("MH", [(0, 18, 0.1), (18, 65, 1.1), (65, 121, 0.8)], 1.5),
]

#: emergency diagnoses: (ICD-10 code, HRG root, treatment function, linked condition or None,
#: weight among spells of patients with/without it, respiratory (winter) flag)
EMERGENCY_DIAGNOSES = [
    ("J441", "DZ65", "340", "COPD", 0.35, True),
    ("I500", "EB03", "320", "HF", 0.35, False),
    ("J459", "DZ15", "340", "ASTHMA", 0.15, True),
    ("E119", "KB02", "307", "DM", 0.10, False),
    ("I489", "EB07", "320", "AF", 0.15, False),
    ("F03X", "WD11", "430", "DEM", 0.15, False),
    ("I209", "EB13", "320", "CHD", 0.12, False),
    ("G409", "AA26", "400", "EPIL", 0.20, False),
    # general mix: condition None, weights relative
    ("J181", "DZ11", "300", None, 0.10, True),
    ("N390", "LA04", "300", None, 0.08, False),
    ("L039", "JD07", "300", None, 0.05, False),
    ("S720", "HN12", "110", None, 0.05, False),
    ("R104", "FD05", "100", None, 0.14, False),
    ("R073", "EB10", "320", None, 0.12, False),
    ("J069", "CB02", "120", None, 0.06, True),
    ("A099", "FD01", "300", None, 0.06, False),
    ("R55X", "EB08", "300", None, 0.07, False),
    ("K359", "FF10", "100", None, 0.04, False),
    ("I639", "AA35", "300", None, 0.05, False),
    ("C349", "DZ17", "370", None, 0.04, False),
    ("E86X", "KC05", "300", None, 0.04, False),
]

#: elective procedures: (HRG root, TFC, day-case share, diagnosis, top-up category or None, weight)
ELECTIVE_PROCEDURES = [
    ("BZ34", "130", 0.98, "H251", None, 0.14),   # cataract
    ("FE21", "301", 0.97, "K219", None, 0.16),   # endoscopy
    ("HN22", "110", 0.05, "M171", "orthopaedic", 0.05),  # knee replacement
    ("HN12", "110", 0.05, "M161", "orthopaedic", 0.04),  # hip replacement
    ("FF21", "100", 0.60, "K409", None, 0.06),   # hernia
    ("LB35", "101", 0.75, "N40X", None, 0.06),   # urology
    ("MA07", "502", 0.80, "N920", None, 0.07),   # gynaecology
    ("SA17", "303", 0.95, "C509", None, 0.08),   # chemotherapy / haematology
    ("JC42", "160", 0.95, "L821", None, 0.06),   # skin
    ("HT12", "108", 0.20, "M511", "spinal", 0.02),  # spinal
    ("CA60", "120", 0.85, "J352", "children", 0.04),  # tonsils (children where young)
    ("EY43", "320", 0.70, "I251", None, 0.05),   # cardiac catheter
    ("FZ18", "100", 0.80, "K802", None, 0.05),   # gall bladder
    ("AA51", "150", 0.30, "G919", "neurosciences", 0.02),
    ("WF01", "300", 0.85, "Z518", None, 0.10),   # other
]

OP_TFC = [("110", 0.14), ("130", 0.10), ("100", 0.07), ("300", 0.07), ("320", 0.09),
          ("330", 0.06), ("340", 0.05), ("420", 0.05), ("502", 0.08), ("101", 0.07),
          ("120", 0.06), ("430", 0.03), ("301", 0.05), ("303", 0.04), ("160", 0.04)]
OP_PROCEDURE_HRG = ["BZ87A", "FE21Z", "JC43Z", "LB72A", "MA21Z"]
AE_HRG = [("VB01Z", 0.02), ("VB02Z", 0.04), ("VB03Z", 0.08), ("VB04Z", 0.06), ("VB05Z", 0.05),
          ("VB06Z", 0.08), ("VB07Z", 0.14), ("VB08Z", 0.15), ("VB09Z", 0.13), ("VB10Z", 0.10),
          ("VB11Z", 0.15)]
AE_PRICE = {"VB01Z": 390, "VB02Z": 330, "VB03Z": 270, "VB04Z": 240, "VB05Z": 210,
            "VB06Z": 190, "VB07Z": 160, "VB08Z": 140, "VB09Z": 120, "VB10Z": 95,
            "VB11Z": 75}

#: scale factors bringing the BNF list below to ≈18.7 items and ≈£151 per registered patient a
#: year (docs/calibration.md §5, NHSBSA Prescription Cost Analysis 2019)
PRESCRIBING_ITEMS_SCALE = 1.47
PRESCRIBING_COST_SCALE = 1.39

#: BNF presentations: (code, name, items per patient per year, cost per item £, age-linked)
BNF = [
    ("0206020A0AAAAAA", "Amlodipine 5mg tablets", 0.9, 1.2, True),
    ("0212000B0AAABAB", "Atorvastatin 20mg tablets", 1.3, 1.4, True),
    ("0601022B0AAABAB", "Metformin 500mg tablets", 0.8, 2.0, True),
    ("0103050P0AAAAAA", "Omeprazole 20mg capsules", 1.2, 1.3, True),
    ("0403030Q0AAAAAA", "Sertraline 50mg tablets", 0.7, 1.6, False),
    ("0302000C0AAAAAA", "Beclometasone inhaler", 0.5, 9.5, False),
    ("0301011R0AAAPAP", "Salbutamol inhaler", 0.9, 2.8, False),
    ("0205051R0AAAAAA", "Ramipril 5mg capsules", 0.8, 1.3, True),
    ("0208020Z0AAAAAA", "Apixaban 5mg tablets", 0.35, 53.0, True),
    ("0407010H0AAAMAM", "Paracetamol 500mg tablets", 1.4, 1.1, False),
    ("0601012V0AAACAC", "Insulin glargine", 0.12, 38.0, True),
    ("0601023AGAAAAAA", "Empagliflozin 10mg tablets", 0.2, 36.0, True),
    ("0501013B0AAAAAA", "Amoxicillin 500mg capsules", 0.45, 1.9, False),
    ("1305020C0AAFVFV", "Emollient cream", 0.6, 5.5, False),
    ("0906040G0AAEKEK", "Colecalciferol capsules", 0.6, 3.0, True),
    ("0402010ABAAABAB", "Aripiprazole tablets", 0.05, 22.0, False),
    ("0408010AEAAAAAA", "Levetiracetam tablets", 0.07, 12.0, False),
    ("0702010G0AAAGAG", "Tamsulosin capsules", 0.35, 1.5, True),
    ("0209000A0AAABAB", "Clopidogrel 75mg tablets", 0.4, 1.3, True),
    ("0204000H0AAAHAH", "Bisoprolol 2.5mg tablets", 0.9, 1.0, True),
    ("0906011A0AAAAAA", "Nutritional supplement", 0.15, 45.0, True),
    ("0212000AAAAAAAA", "Inclisiran injection", 0.01, 980.0, True),
]
SOCIAL_CARE = [("home_care", 0.45, 430.0), ("residential", 0.14, 1000.0),
               ("nursing", 0.08, 1200.0), ("day_care", 0.07, 180.0), ("respite", 0.04, 700.0),
               ("reablement", 0.10, 350.0), ("direct_payment", 0.08, 320.0),
               ("carers_support", 0.04, 60.0)]
