"""Provider contracts and invoice validation (pure core, docs/decisions.md).

* :mod:`pbc.invoices.invoice`: a provider's invoice (CSV text of its own priced lines, one per
  activity id), read and validated; bad input names the file, row and column;
* :mod:`pbc.invoices.check`: every line classified exactly once against pbc's pricing
  (matched, not ours, duplicate, wrong price, wrong practice, not in contract), with the
  money at stake, the challenge list and the reconciliation (lines in = sum of classes);
* :mod:`pbc.invoices.position`: a contract's plan against actual priced activity, by
  service line and month, with variance and the year to date;
* :mod:`pbc.invoices.plant`: a synthetic invoice with planted errors (``pbc synth
  --invoice``), seeded.

The contract file and its tables are :mod:`pbc.decisions.provider_contracts`; the services
(reading the warehouse, recording checks, writing files) :mod:`pbc.services.invoices`.
"""
