"""Lots: what is left of each credit that expires or is pending, and the order points are
spent in.

A credit that expires (`expires_at`) or becomes available later (`available_at`) is a
lot with its remaining amount. Credits available at once that never expire are a
participant's open points: they are not kept as rows, being `balance` minus the
remaining amounts of its available lots (that difference is never negative; `rewards
ledger verify` proves it). They are interchangeable, spent after every dated lot, and
cost an award nothing more than it cost before lots existed.

Spending (a deduction, a paid claim) takes from the available lots soonest-expiring first,
never-expiring last, oldest first among equals, then from the open points. A pending lot,
or one past its `expires_at` that no sweep has expired yet, is never spent: what a
participant can spend is `balance` minus its overdue lots.

The rules here are pure: the writers read a participant's lots under its row lock
(`LOT_BOOKS`), decide with a `LotBook`, and write the lots it changed with their other
rows.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.infra.pgcopy import plain_array_literal
from app.ledger import LockedRow

# An award's optional lot terms, in the API and in uploads.
LOT_TERM_FIELDS = ("expires_in_days", "expires_at", "pending_days", "available_at")
EXPIRES_IN_DAYS_MAX = 36500
PENDING_DAYS_MAX = 3650
_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LotTerms:
    """When an award's points become available and when they expire, as the client asked
    (at most one of each pair). Checked when the award is accepted; its operation keeps
    them as asked (a retry must fingerprint alike), and relative days count from the
    moment it was accepted."""

    expires_in_days: int | None = None
    expires_at: datetime | None = None
    pending_days: int | None = None
    available_at: datetime | None = None

    @classmethod
    def of(cls, fields: dict[str, Any]) -> LotTerms | None:
        """The terms an accepted payload carries (see as_fields); None when none."""
        if not any(fields.get(name) is not None for name in LOT_TERM_FIELDS):
            return None
        return cls(
            fields.get("expires_in_days"),
            instant(fields.get("expires_at")),
            fields.get("pending_days"),
            instant(fields.get("available_at")),
        )

    def as_fields(self) -> dict[str, Any]:
        """The terms given, as a payload carries them."""
        fields: dict[str, Any] = {}
        if self.expires_in_days is not None:
            fields["expires_in_days"] = self.expires_in_days
        if self.expires_at is not None:
            fields["expires_at"] = self.expires_at.isoformat()
        if self.pending_days is not None:
            fields["pending_days"] = self.pending_days
        if self.available_at is not None:
            fields["available_at"] = self.available_at.isoformat()
        return fields

    def problem(self, now: datetime) -> str | None:
        """Why these terms cannot be accepted at `now`, or None."""
        if self.expires_in_days is not None and self.expires_at is not None:
            return "give expires_in_days or expires_at, not both"
        if self.pending_days is not None and self.available_at is not None:
            return "give pending_days or available_at, not both"
        if self.expires_in_days is not None and not (
            1 <= self.expires_in_days <= EXPIRES_IN_DAYS_MAX
        ):
            return f"expires_in_days must be between 1 and {EXPIRES_IN_DAYS_MAX}"
        if self.pending_days is not None and not 1 <= self.pending_days <= PENDING_DAYS_MAX:
            return f"pending_days must be between 1 and {PENDING_DAYS_MAX}"
        for name, instant in (("expires_at", self.expires_at), ("available_at", self.available_at)):
            if instant is not None and instant.tzinfo is None:
                return f"{name} must carry a time zone"
            if instant is not None and instant <= now:
                return f"{name} must be in the future"
        available_at, expires_at = self.resolve(now)
        if available_at is not None and expires_at is not None and expires_at <= available_at:
            return "the points must expire after they become available"
        return None

    def resolve(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """(available_at, expires_at) for an award accepted at `now`; None: at once, never."""
        available_at = self.available_at
        if self.pending_days is not None:
            available_at = now + timedelta(days=self.pending_days)
        expires_at = self.expires_at
        if self.expires_in_days is not None:
            expires_at = now + timedelta(days=self.expires_in_days)
        return available_at, expires_at


def lot_dates(
    available_at: datetime | None,
    expires_at: datetime | None,
    now: datetime,
    default_expiry_days: int | None,
) -> tuple[datetime | None, datetime | None]:
    """An accepted award's (available_at, expires_at) when it is applied at `now`: one
    that waited in the queue past its release is available at once, and without its own
    expiry it takes the program's, counted from when its points become available. (Terms
    mixing an instant and days were checked against the web's clock; should the
    database's acceptance time put the release at or after the expiry, the points are
    available at once.)"""
    if available_at is not None and (
        available_at <= now or (expires_at is not None and expires_at <= available_at)
    ):
        available_at = None
    if expires_at is None and default_expiry_days is not None:
        expires_at = (available_at or now) + timedelta(days=default_expiry_days)
    return available_at, expires_at


def instant(value: object) -> datetime | None:
    """An instant as an operation payload (ISO 8601 text) or a row carries it."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class NewLot:
    """A lot this batch creates; `remaining` drops as the batch spends from it (one spent
    whole in the batch is never written)."""

    __slots__ = ("amount", "available_at", "expires_at", "participant_pk", "remaining")

    def __init__(
        self,
        participant_pk: str,
        amount: int,
        available_at: datetime | None,
        expires_at: datetime | None,
    ) -> None:
        self.participant_pk = participant_pk
        self.amount = self.remaining = amount
        self.available_at = available_at
        self.expires_at = expires_at

    def as_row(self) -> dict[str, Any]:
        return {
            "participant_pk": self.participant_pk,
            "amount": self.amount,
            "remaining": self.remaining,
            "pending": self.available_at is not None,
            "available_at": self.available_at.isoformat() if self.available_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


class _HeldLot:
    """An available lot read under lock, by its key."""

    __slots__ = ("remaining", "seq")

    def __init__(self, seq: int, remaining: int) -> None:
        self.seq = seq
        self.remaining = remaining


class LotBook:
    """What a participant can spend, and its available lots in spending order: those read
    under lock (as many as the batch could spend, see LOT_BOOKS) and those the batch
    credits. Spending past the lots takes the open points."""

    __slots__ = ("_keys", "_lots", "_next_new", "spendable", "spent_from")

    def __init__(self, spendable: int, held: Iterable[tuple[int, int, datetime | None]]):
        self.spendable = spendable
        self._keys: list[tuple[datetime, int]] = []
        self._lots: list[_HeldLot | NewLot] = []
        for seq, remaining, expires_at in held:
            self._keys.append((expires_at or _NEVER, seq))
            self._lots.append(_HeldLot(seq, remaining))
        # Lots this batch creates are newer than any read: they sort after them among
        # equal expiries, in the order they are credited.
        self._next_new = 1 << 62
        # Lots read under lock that spending changed: seq -> remaining (0: spent whole).
        self.spent_from: dict[int, int] = {}

    def credit(self, amount: int, lot: NewLot | None) -> None:
        """An available credit: a new lot, or open points (`lot` None)."""
        self.spendable += amount
        if lot is None:
            return
        key = (lot.expires_at or _NEVER, self._next_new)
        self._next_new += 1
        position = bisect.bisect(self._keys, key)
        self._keys.insert(position, key)
        self._lots.insert(position, lot)

    def spend(self, amount: int) -> None:
        """Take `amount` (at most `spendable`) from the lots in order, then open points."""
        self.spendable -= amount
        for lot in self._lots:
            if amount == 0:
                return
            taken = min(lot.remaining, amount)
            if taken == 0:
                continue
            lot.remaining -= taken
            amount -= taken
            if isinstance(lot, _HeldLot):
                self.spent_from[lot.seq] = lot.remaining


# Under the participants' row locks: for each (participant, points the batch may spend),
# its overdue points (available lots past expires_at; never spendable) and, in spending
# order, as many of its spendable lots as could be needed to pay that many points. One
# scan of the participant's available lots through its spending index: a predicate on
# expires_at alone could be planned on the sweep's index, which holds every overdue lot of
# every participant. A scalar subquery: one JSON value whatever the number of them.
LOT_BOOKS = """
    (SELECT coalesce(json_agg(json_build_array(wanted.pk, book.overdue, book.lots)), '[]')::text
     FROM unnest(CAST(%(spending_pks)s AS uuid[]), CAST(%(spending)s AS bigint[]))
         AS wanted(pk, requested)
     CROSS JOIN LATERAL (
         SELECT coalesce(sum(remaining) FILTER (WHERE overdue), 0) AS overdue,
                coalesce(json_agg(json_build_array(seq, remaining, expires_at)
                                  ORDER BY expires_at, seq)
                         FILTER (WHERE NOT overdue AND before < wanted.requested), '[]')
                    AS lots
         FROM (
             SELECT seq, remaining, expires_at, overdue,
                    sum(spendable) OVER (ORDER BY expires_at, seq) - spendable AS before
             FROM (
                 SELECT seq, remaining, expires_at,
                        coalesce(expires_at <= %(now)s, false) AS overdue,
                        CASE WHEN expires_at <= %(now)s THEN 0 ELSE remaining END AS spendable
                 FROM point_lots
                 WHERE participant_pk = wanted.pk AND NOT pending
             ) AS held
         ) AS ordered
     ) AS book)
"""


def spenders_with_lots(spending: dict[str, int], locked: dict[str, LockedRow]) -> dict[str, int]:
    """`spending` (points by external id) of the locked participants that hold lots, by
    key: LOT_BOOKS's input."""
    return {
        locked[pid].pk: points
        for pid, points in spending.items()
        if pid in locked and locked[pid].holds_lots
    }


def lot_books(
    text: str, spending: dict[str, int], locked: dict[str, LockedRow]
) -> dict[str, LotBook]:
    """A LotBook per spending participant, by external id: LOT_BOOKS's answer for those
    that hold lots (`text`; '[]' when none was read), open points alone for the others."""
    read = parse_lot_books(text, {row.pk: row.balance for row in locked.values()})
    return {
        pid: read.get(locked[pid].pk) or LotBook(locked[pid].balance, ())
        for pid in spending
        if pid in locked
    }


def lot_books_params(spending: dict[str, int], now: datetime) -> dict[str, Any]:
    """LOT_BOOKS's parameters: points each participant (by key) may spend in the batch."""
    return {
        "spending_pks": plain_array_literal(spending),
        "spending": plain_array_literal(str(points) for points in spending.values()),
        "now": now,
    }


def parse_lot_books(text: str, balances: dict[str, int]) -> dict[str, LotBook]:
    """LOT_BOOKS's answer as a LotBook per participant key; `balances` by key."""
    books: dict[str, LotBook] = {}
    for pk, overdue, lots in json.loads(text):
        books[pk] = LotBook(
            balances[pk] - int(overdue),
            (
                (
                    int(seq),
                    int(remaining),
                    datetime.fromisoformat(expires_at) if expires_at else None,
                )
                for seq, remaining, expires_at in lots
            ),
        )
    return books


# The lots a batch created and those it spent from, in one statement (CTEs of the
# batch's write): a lot spent whole is deleted, and one created and spent whole in the
# batch was never written. Lots are found by key through arrays (a join on the JSON rows
# may be planned as a scan of every lot).
WRITE_LOTS = """
    new_lots AS (
        INSERT INTO point_lots (
            participant_pk, amount, remaining, pending, available_at, expires_at, created_at
        )
        SELECT lot.participant_pk, lot.amount, lot.remaining, lot.pending, lot.available_at,
               lot.expires_at, %(now)s
        FROM jsonb_to_recordset(CAST(%(new_lots)s AS jsonb)) AS lot(
            participant_pk uuid, amount bigint, remaining bigint, pending boolean,
            available_at timestamptz, expires_at timestamptz
        )
    ),
    spent_lots AS (
        UPDATE point_lots AS lot SET remaining = spent.remaining
        FROM unnest(CAST(%(spent_seqs)s AS bigint[]), CAST(%(spent_left)s AS bigint[]))
            AS spent(seq, remaining)
        WHERE lot.seq = ANY(CAST(%(spent_seqs)s AS bigint[])) AND lot.seq = spent.seq
    ),
    emptied_lots AS (
        DELETE FROM point_lots WHERE seq = ANY(CAST(%(emptied_seqs)s AS bigint[]))
    )
"""


def write_lots_params(new_lots: Iterable[NewLot], books: Iterable[LotBook]) -> dict[str, str]:
    """WRITE_LOTS's parameters; empty when the batch changes no lot (its writer then runs
    its statement without WRITE_LOTS: empty data-modifying CTEs still cost their start)."""
    spent: dict[int, int] = {}
    for book in books:
        spent.update(book.spent_from)
    created = [lot.as_row() for lot in new_lots if lot.remaining > 0]
    if not spent and not created:
        return {}
    left = {seq: remaining for seq, remaining in spent.items() if remaining > 0}
    return {
        "new_lots": json.dumps(created),
        "spent_seqs": plain_array_literal(str(seq) for seq in left),
        "spent_left": plain_array_literal(str(remaining) for remaining in left.values()),
        "emptied_seqs": plain_array_literal(
            str(seq) for seq, remaining in spent.items() if remaining == 0
        ),
    }
