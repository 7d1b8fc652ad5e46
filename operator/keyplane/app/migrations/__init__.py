"""Alembic revisions of the app's tables (run by :mod:`keyplane.app.schema`, never by hand)."""
