"""Rewards: the catalog (definitions), the code inventory, and claims."""
