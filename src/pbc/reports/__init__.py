"""Reports for people: workbooks in the house style (:mod:`pbc.reports.workbook`)."""
