"""Tariff settings: the national adjustments that are policy, not prices.

Read from a TOML file (``tariff_settings.toml``, written by the synthetic generator and
kept by the loader). Every section is optional; the defaults are:

=====================================  =========================================================
key                                    default (source)
=====================================  =========================================================
``financial_year``                     none (the tariff year, ``"2025/26"`` or ``"2025-26"``,
                                       kept as ``2025-26``)
``emergency_marginal_rate.rate``       0.30 (30% of tariff above baseline, 2010-11 to 2014-15:
                                       HFMA, 3 Mar 2010)
``emergency_marginal_rate.baseline``   none: no spell is cut. One per contract (commissioner,
                                       provider) and financial year; an entry's
                                       ``financial_year`` defaults to the settings' own
``short_stay_emergency.min_age``       19 (reduced short stay emergency tariff: age >= 19)
``short_stay_emergency.max_length_..`` 1 (length of stay 0 or 1 day)
``top_up``                             2011/12 rates: children 0.60, orthopaedic 0.24, spinal
                                       0.32, neurosciences 0.28 (HFMA, May 2011)
``outpatients.telephone_*_fraction``   1.0 (non-face-to-face paid as face-to-face)
``ae.department_type_fraction``        1.0 for department types 1-4
``apc.regular_attender``               ``"day_case"`` (see :mod:`pbc.pricing.apc`)
=====================================  =========================================================

The marginal rate of a year without a baseline for a contract is not applied (the spell's
rule text says so): a baseline is the value of one year's activity of one contract
(HFMA, 3 Mar 2010), so it is never carried to another year.

Fractions and rates are exact decimals with at most :data:`FRACTION_PLACES` decimal places
(a TOML float such as ``0.30`` is read through its shortest text form, so it is exactly
0.30, never 0.2999...). Unknown keys are an error, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pbc.calendar import format_financial_year, parse_financial_year

#: decimal places kept for rates, fractions and the MFF (the MFF is published to 6 places)
FRACTION_PLACES = 6


class SettingsError(ValueError):
    """A tariff settings file that cannot be used; the message names the file and key."""


def _exact_fraction(value: Any) -> Any:
    """Turn a TOML float into the Decimal it was written as (``0.3`` -> ``Decimal('0.3')``)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    return value


def _check_places(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > FRACTION_PLACES:
        raise ValueError(f"at most {FRACTION_PLACES} decimal places are supported")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def canonical_year(text: str) -> str:
    """A financial year as pbc stores and shows it: ``2025/26`` or ``2025-26`` -> ``2025-26``
    (ValueError, naming the expected form, for anything else)."""
    return format_financial_year(parse_financial_year(text), "-")


class ContractBaseline(_Section):
    """Emergency baseline of one contract (commissioner, provider) in one financial year, in
    pounds (a baseline per contract and year: HFMA, 3 Mar 2010; ``docs/sources.md`` §1.6).

    ``financial_year`` may be left out: it is then the settings' ``financial_year`` (and an
    error if the settings have none). Kept as ``2025-26``.
    """

    commissioner_code: str = Field(min_length=1)
    provider_code: str = Field(min_length=1)
    baseline: Decimal = Field(ge=0)
    financial_year: str | None = None

    @field_validator("financial_year")
    @classmethod
    def _year(cls, v: str | None) -> str | None:
        return None if v is None else canonical_year(v)

    @field_validator("baseline", mode="before")
    @classmethod
    def _money(cls, v: Any) -> Any:
        return _exact_fraction(v)

    @field_validator("baseline")
    @classmethod
    def _pennies(cls, v: Decimal) -> Decimal:
        exponent = v.normalize().as_tuple().exponent
        if isinstance(exponent, int) and exponent < -2:
            raise ValueError("a baseline is money: at most 2 decimal places")
        return v


class EmergencyMarginalRate(_Section):
    """Marginal rate emergency tariff (MRET): the rate and the contract baselines
    (HFMA, 3 Mar 2010; :mod:`pbc.pricing.mret`)."""

    rate: Decimal = Field(default=Decimal("0.30"), ge=0, le=1)
    baseline: tuple[ContractBaseline, ...] = ()

    @field_validator("rate", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        return _exact_fraction(v)

    @field_validator("rate")
    @classmethod
    def _places(cls, v: Decimal) -> Decimal:
        return _check_places(v)


class ShortStayEmergency(_Section):
    """Reduced short stay emergency tariff conditions (HFMA, "Introduction to payment by
    results", May 2011)."""

    min_age: int = Field(default=19, ge=0, le=120)
    max_length_of_stay: int = Field(default=1, ge=0)



class TopUp(_Section):
    """Specialised service top-up, fraction of the tariff price (2011/12 rates, HFMA May 2011)."""

    children: Decimal = Field(default=Decimal("0.60"), ge=0, le=10)
    orthopaedic: Decimal = Field(default=Decimal("0.24"), ge=0, le=10)
    spinal: Decimal = Field(default=Decimal("0.32"), ge=0, le=10)
    neurosciences: Decimal = Field(default=Decimal("0.28"), ge=0, le=10)

    @field_validator("*", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        return _exact_fraction(v)

    @field_validator("*")
    @classmethod
    def _places(cls, v: Decimal) -> Decimal:
        return _check_places(v)

    def fractions(self) -> dict[str, Decimal]:
        """Category -> fraction, in the contract's category order."""
        return {
            "children": self.children, "orthopaedic": self.orthopaedic,
            "spinal": self.spinal, "neurosciences": self.neurosciences,
        }


class Outpatients(_Section):
    """Outpatient attendance adjustments (non-face-to-face as a fraction of the price)."""

    telephone_first_fraction: Decimal = Field(default=Decimal(1), ge=0, le=10)
    telephone_follow_up_fraction: Decimal = Field(default=Decimal(1), ge=0, le=10)

    @field_validator("*", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        return _exact_fraction(v)

    @field_validator("*")
    @classmethod
    def _places(cls, v: Decimal) -> Decimal:
        return _check_places(v)


def _default_department_fractions() -> dict[str, Decimal]:
    return {"1": Decimal(1), "2": Decimal(1), "3": Decimal(1), "4": Decimal(1)}


class AE(_Section):
    """A&E: fraction of the HRG price paid by department type (1-4)."""

    department_type_fraction: dict[str, Decimal] = Field(
        default_factory=_default_department_fractions)

    @field_validator("department_type_fraction", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): _exact_fraction(x) for k, x in v.items()}
        return v

    @field_validator("department_type_fraction")
    @classmethod
    def _valid(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        for k, x in v.items():
            if k not in ("1", "2", "3", "4"):
                raise ValueError(f"department type {k!r} is not one of 1, 2, 3, 4")
            if x < 0 or x > 10:
                raise ValueError(f"fraction for department type {k} must be between 0 and 10")
            _check_places(x)
        # a type left out is paid at the full price
        return {**_default_department_fractions(), **v}


class APC(_Section):
    """Admitted patient care choices the reference leaves open (see :mod:`pbc.pricing.apc`).

    ``regular_attender`` prices elective regular day and night attenders (patient
    classification 3 and 4): ``day_case`` at the day case price (default), ``ordinary`` at
    the ordinary elective price, or ``unpriced`` (local prices: left unpriced with a reason).
    """

    regular_attender: Literal["day_case", "ordinary", "unpriced"] = "day_case"


class TariffSettings(_Section):
    """All tariff settings (one tariff year). Build with :func:`load_settings`."""

    financial_year: str | None = None
    emergency_marginal_rate: EmergencyMarginalRate = Field(default_factory=EmergencyMarginalRate)
    short_stay_emergency: ShortStayEmergency = Field(default_factory=ShortStayEmergency)
    top_up: TopUp = Field(default_factory=TopUp)
    outpatients: Outpatients = Field(default_factory=Outpatients)
    ae: AE = Field(default_factory=AE)
    apc: APC = Field(default_factory=APC)

    @field_validator("financial_year")
    @classmethod
    def _year(cls, v: str | None) -> str | None:
        return None if v is None else canonical_year(v)  # ValueError names the form

    @model_validator(mode="after")
    def _baseline_years(self) -> TariffSettings:
        """Give each baseline without a year the settings' year; refuse a baseline with no
        year at all, and two baselines for one contract in one year."""
        mret = self.emergency_marginal_rate
        filled: list[ContractBaseline] = []
        seen: set[tuple[str, str, str]] = set()
        for i, b in enumerate(mret.baseline):
            year = b.financial_year or self.financial_year
            if year is None:
                raise ValueError(
                    f"key emergency_marginal_rate.baseline.{i}: no financial_year for the "
                    f"baseline of commissioner {b.commissioner_code} / provider "
                    f"{b.provider_code}, and no financial_year for the settings (give one)")
            key = (b.commissioner_code, b.provider_code, year)
            if key in seen:
                raise ValueError(
                    f"key emergency_marginal_rate.baseline.{i}: two baselines for contract "
                    f"commissioner {key[0]} / provider {key[1]} in {year}")
            seen.add(key)
            filled.append(b if b.financial_year else b.model_copy(
                update={"financial_year": year}))
        if filled != list(mret.baseline):
            # frozen model: the filled-in baselines replace the given ones once, here
            object.__setattr__(self, "emergency_marginal_rate",
                               mret.model_copy(update={"baseline": tuple(filled)}))
        return self


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["loc"]:
            parts.append(f"key {'.'.join(str(p) for p in e['loc'])}: {msg}")
        else:  # a check across keys names its keys itself
            parts.append(msg)
    return "; ".join(parts)


def settings_from_dict(data: dict[str, Any], source: str = "tariff settings") -> TariffSettings:
    """Validate a parsed TOML document; :class:`SettingsError` names ``source`` and the key."""
    try:
        return TariffSettings.model_validate(data)
    except ValidationError as e:
        raise SettingsError(f"{source}: {_describe(e)}") from e


def load_settings(path: str | Path) -> TariffSettings:
    """Read tariff settings from a TOML file.

    Raises :class:`SettingsError` naming the file (and the key) when the file is missing,
    is not TOML, or holds a value that is not allowed.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"{p}: cannot read tariff settings: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise SettingsError(f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at position "
                            f"{e.start}); save the file as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{p}: not a valid TOML file: {e}") from e
    return settings_from_dict(data, str(p))
