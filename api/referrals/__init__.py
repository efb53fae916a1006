"""HTTP for referrals: the program (admin), codes, tracking, completion, listings."""
