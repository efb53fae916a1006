"""Celery workers: thin tasks that open a session, call the domain core and commit."""
