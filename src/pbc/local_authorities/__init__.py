"""Working with local authorities: the pure core.

Section 75 pooled budgets (NHS Act 2006, s.75, formerly s.31 of the Health Act 1999), the
joint strategic needs assessment's neighbourhood profiles, coterminosity of practice groups
with council neighbourhoods, and shared clients of NHS and social care. Nothing here reads
files or warehouses; the services (``pbc.services``) do, and the CLI's ``pbc la`` commands
call them. docs/local-authorities.md describes the methods.
"""
