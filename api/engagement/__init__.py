"""HTTP for actions and engagement: earning rules, badges."""
