"""Alembic migrations, shipped as a package so `rewards db upgrade` works from a wheel."""
