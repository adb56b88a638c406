"""Which commissioner and group an activity row belongs to (reference: CONTRACTS.md).

The rules, applied to every activity row (APC, outpatients, A&E, prescribing):

1. The practice is the one on the row (activity rows carry the registered practice *at the
   time of the activity*). A practice is *known* when it is in ``practices``.
2. The commissioner is the known practice's ``commissioner_code``. For a blank or unknown
   practice it is the activity's own ``commissioner_code`` (SUS responsible commissioner)
   when the row has one, else the only commissioner when there is exactly one, else NULL.
3. The group is the practice's group *as at the activity date*: a ``practice_groups`` row
   whose window ``valid_from <= date <= valid_to`` (``valid_to`` blank: open) overrides
   ``practices.group_code``; if windows overlap, the one that started last wins.

Every function here is a pure Ibis expression builder, so it runs on any backend.
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import ibis.expr.types as ir
from ibis import _


def is_blank(code: ir.Value) -> ir.BooleanValue:
    """A code that is NULL or only spaces."""
    s = code.cast("string")
    return s.isnull() | (s.strip() == "")


def single_commissioner(tables: Mapping[str, ir.Table]) -> ir.Table:
    """One row, one column ``_single_commissioner``: the only commissioner, or NULL.

    Taken from ``commissioners`` when given, else from the practices' commissioners.
    """
    if "commissioners" in tables:
        codes = tables["commissioners"].select(code=_.commissioner_code.cast("string"))
    elif "practices" in tables:
        codes = tables["practices"].select(code=_.commissioner_code.cast("string"))
    else:
        return ibis.memtable({"_single_commissioner": [None]},
                             schema={"_single_commissioner": "string"})
    agg = codes.aggregate(_n=_.code.nunique(), _only=_.code.max())
    return agg.select(
        _single_commissioner=ibis.ifelse(_._n == 1, _._only, ibis.null("string")))


def resolve_commissioner(activity: ir.Table, tables: Mapping[str, ir.Table]) -> ir.Table:
    """Add ``commissioner_code`` (rule 2 above) and ``attributed`` (practice known).

    ``activity`` needs ``practice_code``; its own ``commissioner_code`` is used when
    present. The result has every column of ``activity`` (``commissioner_code`` replaced by
    the resolved one) plus ``attributed``; it has exactly the rows of ``activity``.
    """
    cols = activity.columns
    recorded = (activity.commissioner_code.cast("string") if "commissioner_code" in cols
                else ibis.null("string"))
    base = activity.mutate(_recorded_commissioner=recorded)
    if "commissioner_code" in cols:
        base = base.drop("commissioner_code")
    single = single_commissioner(tables)
    base = base.cross_join(single)
    if "practices" in tables:
        prac = tables["practices"].select(
            _p_code=_.practice_code.cast("string"),
            _p_commissioner=_.commissioner_code.cast("string"),
        )
        joined = base.left_join(prac, base.practice_code.cast("string") == prac._p_code)
        joined = joined.mutate(_known=_._p_code.notnull())
    else:
        joined = base.mutate(_known=ibis.literal(False), _p_code=ibis.null("string"),
                             _p_commissioner=ibis.null("string"))
    resolved = joined.mutate(
        commissioner_code=ibis.cases(
            (_._known, _._p_commissioner),
            (~is_blank(_._recorded_commissioner), _._recorded_commissioner),
            else_=_._single_commissioner,
        ),
        attributed=_._known,
    )
    return resolved.drop("_recorded_commissioner", "_single_commissioner", "_p_code",
                         "_p_commissioner", "_known")


def group_as_at(activity: ir.Table, tables: Mapping[str, ir.Table],
                date_column: str = "activity_date") -> ir.Table:
    """Add ``group_code``: the practice's group as at ``date_column`` (rule 3 above).

    Rows whose practice is not known get NULL. The result has exactly the rows of
    ``activity`` (overrides are chosen per distinct practice and date, then joined on that
    unique key, so overlapping windows can never duplicate a row).
    """
    if "practices" not in tables:
        return activity.mutate(group_code=ibis.null("string"))
    prac = tables["practices"].select(
        _g_practice=_.practice_code.cast("string"), _g_default=_.group_code.cast("string"))
    out = activity.left_join(prac, activity.practice_code.cast("string") == prac._g_practice)
    out = out.mutate(_g_date=out[date_column])
    if "practice_groups" in tables:
        pg = tables["practice_groups"].select(
            _o_practice=_.practice_code.cast("string"),
            _o_group=_.group_code.cast("string"),
            _o_from=_.valid_from.cast("date"),
            _o_to=_.valid_to.cast("date"),
        )
        pairs = out.filter(_._g_practice.notnull()).select(
            _k_practice=_._g_practice, _k_date=_._g_date).distinct()
        matched = pairs.join(
            pg,
            (pairs._k_practice == pg._o_practice)
            & (pg._o_from <= pairs._k_date)
            & (pg._o_to.isnull() | (pairs._k_date <= pg._o_to)),
        )
        rank = ibis.row_number().over(
            group_by=[matched._k_practice, matched._k_date],
            order_by=[ibis.desc(matched._o_from), matched._o_group],
        )
        chosen = (matched.mutate(_rank=rank).filter(_._rank == 0)
                  .select("_k_practice", "_k_date", "_o_group"))
        out = out.left_join(
            chosen, (out._g_practice == chosen._k_practice) & (out._g_date == chosen._k_date))
        out = out.mutate(group_code=ibis.coalesce(_._o_group, _._g_default))
        out = out.drop("_k_practice", "_k_date", "_o_group")
    else:
        out = out.mutate(group_code=_._g_default)
    return out.drop("_g_practice", "_g_default", "_g_date")
