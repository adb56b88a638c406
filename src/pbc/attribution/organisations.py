"""Which commissioner and group an activity row belongs to (reference: docs/data-contracts.md).

The rules, applied to every activity row (APC, outpatients, A&E, prescribing):

1. The practice is the one on the row (activity rows carry the registered practice *at the
   time of the activity*). A practice is *known* when it is in ``practices``.
2. The commissioner is the known practice's ``commissioner_code``. For a blank or unknown
   practice it is the activity's own ``commissioner_code`` (SUS responsible commissioner)
   when the row has one, else the only commissioner when there is exactly one, else NULL.
3. The group is the practice's group *as at the activity date*: a ``practice_groups`` row
   whose window ``valid_from <= date <= valid_to`` (``valid_to`` blank: open) overrides
   ``practices.group_code``; if windows overlap, the one that started last wins (then the
   lowest group code); on a date no window covers, the practice is in its default group
   (``practices.group_code``).

Rule 3 is the one rule of group membership in pbc: attribution applies it to activity rows
(:func:`group_as_at`) and budgets to the first day of each month and to 1 April
(:func:`groups_on_days`, which calls :func:`group_as_at`).

Every function here is a pure Ibis expression builder, so it runs on any backend. The
activity table (millions of rows) is only ever *joined* to small tables built from the
reference tables (practices, and the override windows cut into non-overlapping
segments), each join matching at most one row, so a row is never duplicated and the
activity is read once, in one pass.
"""

from __future__ import annotations

import datetime as dt_
from collections.abc import Mapping, Sequence

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
from ibis import _

#: the last date of the last (open-ended) override segment (the latest date Spark has)
END_OF_TIME = "9999-12-31"


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


def practice_lookup(tables: Mapping[str, ir.Table]) -> ir.Table | None:
    """``_p_code``, ``_p_commissioner``, ``_p_group`` (default group) per known practice."""
    if "practices" not in tables:
        return None
    return tables["practices"].select(
        _p_code=_.practice_code.cast("string"),
        _p_commissioner=_.commissioner_code.cast("string"),
        _p_group=_.group_code.cast("string"),
    )


def _as_date(expr: ir.Value) -> ir.DateValue:
    # date +/- interval is a timestamp in DuckDB; Ibis believes it is a date, so force it
    return ops.Cast(expr, to=dt.date).to_expr()


def group_segments(tables: Mapping[str, ir.Table]) -> ir.Table | None:
    """The ``practice_groups`` override windows cut into non-overlapping segments.

    Columns ``_s_practice``, ``_s_from``, ``_s_to`` (inclusive; the last segment of a
    practice ends on :data:`END_OF_TIME`) and ``_s_group``: on every date of a segment the
    same windows are open, and ``_s_group`` is the winner of rule 3 among them. Dates that
    no window covers have no segment (the practice's default group applies). A window
    without ``valid_from`` never applies. Built from ``practice_groups`` alone (a small
    table), so attributing activity needs one join that can match at most once.
    """
    if "practice_groups" not in tables:
        return None
    pg = tables["practice_groups"].select(
        _o_practice=_.practice_code.cast("string"),
        _o_group=_.group_code.cast("string"),
        _o_from=_.valid_from.cast("date"),
        _o_to=_.valid_to.cast("date"),
    ).filter(_._o_from.notnull())
    # coverage can only change where a window starts or the day after one ends
    starts = pg.select(_c_practice=_._o_practice, _c_at=_._o_from)
    closed = pg.filter(pg._o_to.notnull())
    ends = closed.select(_c_practice=closed._o_practice,
                         _c_at=_as_date(closed._o_to + ibis.interval(days=1)))
    cuts = starts.union(ends, distinct=True)
    nxt = ibis.window(group_by=cuts._c_practice, order_by=cuts._c_at)
    cuts = cuts.mutate(_c_next=cuts._c_at.lead().over(nxt))
    cuts = cuts.mutate(_c_to=ibis.coalesce(
        _as_date(cuts._c_next - ibis.interval(days=1)),
        ibis.literal(END_OF_TIME).cast("date")))
    open_windows = cuts.join(
        pg,
        (cuts._c_practice == pg._o_practice) & (pg._o_from <= cuts._c_at)
        & (pg._o_to.isnull() | (cuts._c_at <= pg._o_to)),
    )
    rank = ibis.row_number().over(
        group_by=[open_windows._c_practice, open_windows._c_at],
        order_by=[ibis.desc(open_windows._o_from), open_windows._o_group],
    )
    return (open_windows.mutate(_rank=rank).filter(_._rank == 0)
            .select(_s_practice=_._c_practice, _s_from=_._c_at, _s_to=_._c_to,
                    _s_group=_._o_group))


def join_organisations(activity: ir.Table, tables: Mapping[str, ir.Table],
                   date_column: str | None, with_single: bool) -> tuple[ir.Table, dict]:
    """``activity`` left-joined (one join chain) to the single commissioner, the practices
    and, when ``date_column`` is given, the group segments; and the values they give:
    ``known`` (practice in ``practices``), ``practice_commissioner``, ``single`` (the only
    commissioner, when ``with_single``) and ``group`` (rule 3; NULL for an unknown
    practice). Select from the join with these; it has exactly the rows of ``activity``."""
    practice = activity.practice_code.cast("string")
    joined: ir.Table = activity
    if with_single:
        joined = joined.cross_join(single_commissioner(tables))
    prac = practice_lookup(tables)
    if prac is not None:
        joined = joined.left_join(prac, practice == prac._p_code)
    seg = group_segments(tables) if (date_column is not None and prac is not None) else None
    if seg is not None:
        day = activity[date_column]
        joined = joined.left_join(
            seg, (practice == seg._s_practice) & (seg._s_from <= day) & (day <= seg._s_to))
    known = joined._p_code.notnull() if prac is not None else ibis.literal(False)
    values: dict[str, ir.Value] = {"known": known}
    values["practice_commissioner"] = (joined._p_commissioner if prac is not None
                                       else ibis.null("string"))
    if with_single:
        values["single"] = joined._single_commissioner
    if prac is not None:
        default = joined._p_group
        group = ibis.coalesce(joined._s_group, default) if seg is not None else default
        values["group"] = ibis.ifelse(known, group, ibis.null("string"))
    else:
        values["group"] = ibis.null("string")
    return joined, values


def resolve_commissioner(activity: ir.Table, tables: Mapping[str, ir.Table]) -> ir.Table:
    """Add ``commissioner_code`` (rule 2 above) and ``attributed`` (practice known).

    ``activity`` needs ``practice_code``; its own ``commissioner_code`` is used when
    present. The result has every column of ``activity`` (``commissioner_code`` replaced by
    the resolved one, placed last) plus ``attributed``; it has exactly the rows of
    ``activity``.
    """
    cols = [c for c in activity.columns if c != "commissioner_code"]
    recorded = (activity.commissioner_code.cast("string")
                if "commissioner_code" in activity.columns else ibis.null("string"))
    joined, v = join_organisations(activity, tables, None, with_single=True)
    commissioner = ibis.cases(
        (v["known"], v["practice_commissioner"]),
        (~is_blank(recorded), recorded),
        else_=v["single"],
    )
    return joined.select(*cols, commissioner_code=commissioner, attributed=v["known"])


def group_as_at(activity: ir.Table, tables: Mapping[str, ir.Table],
                date_column: str = "activity_date") -> ir.Table:
    """Add ``group_code``: the practice's group as at ``date_column`` (rule 3 above).

    Rows whose practice is not known get NULL. The result has exactly the rows of
    ``activity`` (the override segments never overlap, so a row matches at most one).
    """
    joined, v = join_organisations(activity, tables, date_column, with_single=False)
    return joined.select(*activity.columns, group_code=v["group"])


def groups_on_days(practices: ir.Table, practice_codes: Sequence[str],
                   days: Sequence[dt_.date], practice_groups: ir.Table | None = None
                   ) -> ir.Table:
    """The group of each of ``practice_codes`` on each of ``days`` by rule 3 (through
    :func:`group_as_at`): columns ``practice_code``, ``day`` (date), ``group_code`` (NULL:
    no group that day, or a practice not in ``practices``).

    ``practices`` needs ``practice_code`` and ``group_code`` (the default group);
    ``practice_groups`` the override windows (``practice_code``, ``group_code``,
    ``valid_from``, ``valid_to``). One row per practice code and day.
    """
    if "commissioner_code" not in practices.columns:
        practices = practices.mutate(commissioner_code=ibis.null("string"))
    codes = list(dict.fromkeys(str(c) for c in practice_codes))
    grid = ibis.memtable({"practice_code": [c for c in codes for _d in days],
                          "activity_date": [d for _c in codes for d in days]},
                         schema={"practice_code": "string", "activity_date": "date"})
    tables: dict[str, ir.Table] = {"practices": practices}
    if practice_groups is not None:
        tables["practice_groups"] = practice_groups
    out = group_as_at(grid, tables, "activity_date")
    return out.select("practice_code", day=out.activity_date, group_code=out.group_code)
