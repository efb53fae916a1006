"""rewards-engine domain core: settings, database, models and services.

Nothing in this package imports Flask or Celery; the HTTP front (`api`) and the
workers (`workers`) call into it and own the transactions.
"""
