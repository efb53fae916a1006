"""Admin endpoints for webhook endpoints and their delivery log."""
