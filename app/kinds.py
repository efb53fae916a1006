"""Importing this module registers every operation kind the workers can execute."""

import app.points.kinds
import app.rewards.claim_batches  # noqa: F401
