"""Importing this module registers every operation kind the workers can execute."""

import app.points.kinds
import app.rewards.claims  # noqa: F401
