"""HTTP for engagement: the admin's earning rules and badges."""
