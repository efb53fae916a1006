"""Engagement: what participants' actions drive (earning rules, badges), decided in the one
action pipeline (app.engagement.pipeline) inside the everyday write's transaction."""
