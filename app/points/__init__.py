"""Points: awards and deductions on the ledger, tiers, batch and bulk awarding."""
