"""HTTP for actions and engagement: earning rules, badges, streaks, challenges,
leaderboards."""
