"""Rewards endpoints: the participant-facing catalog and claims, and admin management."""
