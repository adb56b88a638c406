"""The web app (``pbc serve``): server-rendered pages and a REST API over pbc's services.

It adds no business logic of its own: every page and endpoint calls the same service
functions as the command line, with the signed-in user's principal, so the same access
rules apply. :func:`pbc.web.app.create_app` builds the application.
"""
