"""Coupon endpoints: validate, redeem and void; admin management and code generation."""
