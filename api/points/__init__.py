"""HTTP for points, tiers and bulk awards."""

from __future__ import annotations

from flask import Blueprint

from api.points import balances, bulk, participant_tiers, program, tiers, writes

blueprints: tuple[Blueprint, ...] = (
    writes.bp,
    balances.bp,
    tiers.bp,
    participant_tiers.bp,
    program.bp,
    bulk.bp,
)
