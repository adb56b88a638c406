"""Use cases shared by the CLI and (later) the web app.

Each service takes plain arguments (and, where data is patient-level, a principal),
calls the pure domain core, and reads or writes the warehouse.
"""
