"""Coupons: discount codes with rules and limits, their redemptions and generated codes."""
