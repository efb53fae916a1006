"""Webhook delivery: endpoints, Standard Webhooks signing, the fan-out and retry state
machine kept in PostgreSQL, and an HTTP transport that only connects to vetted addresses.
"""
