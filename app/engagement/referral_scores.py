"""Leaderboards of metric `referral_count`: a referrer's score is how many of their
referrals completed (from the leaderboard's creation on, in the period of the completion),
kept in the transaction that completes them (app.referrals.completion).

Not the action pipeline's read-decide-write under the participant's row lock: completion
holds the referees' rows (the everyday write) or one referral row (by hand), never the
referrer's, and taking it there would break the one lock order. Only completion writes
these boards' scores, so an increment is enough: INSERT ... ON CONFLICT DO UPDATE SET score
= score + n returns what each score became, whatever completes concurrently. Its rows go in
(leaderboard, period, participant) order, so two completions of the same referrers queue
on the score rows instead of deadlocking. The referrer's participant row is there: tracking
makes it (app.referrals.tracking); a referrer without one scores nothing.

Rank-change events are decided as the pipeline's are (app.engagement.leaderboards
.rank_changes), against the top read before the increment.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlalchemy.orm import Session

from app.engagement.leaderboard_cache import ScoreUpdate, push_after_commit
from app.engagement.leaderboards import LeaderboardDef, Score, Tops, rank_changes
from app.engagement.pipeline import TOPS, tops_of
from app.infra.pgcopy import fetch_tuples
from app.outbox import LEADERBOARD_RANK_CHANGED, record_events

# (leaderboard id, period start, referrer id) -> referrals completed
Steps = dict[tuple[str, date, str], int]

_BOARDS = """
    SELECT coalesce(json_agg(l ORDER BY l.created_at, l.id), '[]')::text
    FROM leaderboards AS l
    WHERE l.tenant_id = %(tenant_id)s AND l.env = %(env)s AND l.active
      AND l.metric = 'referral_count'
"""

_TOPS = "SELECT (" + TOPS + ")::text"

_INCREMENT = """
    WITH scored AS (
        INSERT INTO leaderboard_scores AS s (
            leaderboard_id, period_start, participant_pk, score, reached_at
        )
        SELECT x.leaderboard_id, x.period_start, p.id, x.step, %(now)s
        FROM jsonb_to_recordset(CAST(%(steps)s AS jsonb)) AS x(
            leaderboard_id uuid, period_start date, referrer_id text, step bigint
        )
        JOIN participants AS p
          ON p.tenant_id = %(tenant_id)s AND p.env = %(env)s AND p.external_id = x.referrer_id
        ORDER BY x.leaderboard_id, x.period_start, p.id
        ON CONFLICT (leaderboard_id, period_start, participant_pk) DO UPDATE SET
            score = s.score + excluded.score, reached_at = excluded.reached_at
        RETURNING s.leaderboard_id, s.period_start, s.participant_pk, s.score, s.reached_at
    )
    SELECT CAST(scored.leaderboard_id AS text), scored.period_start,
           CAST(scored.participant_pk AS text), p.external_id, scored.score, scored.reached_at
    FROM scored JOIN participants AS p ON p.id = scored.participant_pk
"""


def referral_steps(
    boards: Iterable[LeaderboardDef], referrer_ids: Iterable[str], at: datetime
) -> Steps:
    """What referrals completed at `at` (one per referrer id listed) add to the boards."""
    completed = Counter(referrer_ids)
    steps: Steps = {}
    for board in boards:
        step = board.counts_referral(at)
        if not step:
            continue
        period = board.period_start(at)
        for referrer_id, count in completed.items():
            steps[(board.id, period, referrer_id)] = step * count
    return steps


def score_referrals(
    session: Session,
    tenant_id: uuid.UUID,
    env: str,
    referrer_ids: Sequence[str],
    now: datetime,
) -> None:
    """Count referrals completed now toward the program's referral_count leaderboards:
    scores written, rank changes recorded as events, the cache pushed after the commit."""
    where = {"tenant_id": tenant_id, "env": env}
    [(board_rows,)] = fetch_tuples(session, _BOARDS, where)
    boards = {board.id: board for board in map(LeaderboardDef.of, json.loads(board_rows))}
    steps = referral_steps(boards.values(), referrer_ids, now)
    if not steps:
        return
    periods = sorted({(board_id, period) for board_id, period, _ in steps})
    watched = [
        {"leaderboard_id": board_id, "period_start": period.isoformat(), "top": top}
        for board_id, period in periods
        if (top := boards[board_id].notify_top) > 0
    ]
    tops: Tops = {}
    if watched:
        [(top_rows,)] = fetch_tuples(session, _TOPS, {"periods": json.dumps(watched)})
        tops = tops_of(top_rows)
    rows = fetch_tuples(
        session,
        _INCREMENT,
        {
            **where,
            "now": now,
            "steps": json.dumps(
                [
                    {
                        "leaderboard_id": board_id,
                        "period_start": period.isoformat(),
                        "referrer_id": referrer_id,
                        "step": step,
                    }
                    for (board_id, period, referrer_id), step in sorted(steps.items())
                ]
            ),
        },
    )
    changed: dict[tuple[str, date], dict[str, Score]] = {}
    for board_id, period, pk, external_id, score, reached_at in rows:
        changed.setdefault((board_id, period), {})[pk] = Score(external_id, score, reached_at)
    for (board_id, period), scores in changed.items():
        record_events(
            session,
            tenant_id,
            env,
            LEADERBOARD_RANK_CHANGED,
            rank_changes(boards[board_id], period, tops.get((board_id, period), []), scores),
        )
    push_after_commit(
        session,
        [
            ScoreUpdate(board_id, period, score.participant_id, score.score, score.reached_at)
            for (board_id, period), scores in changed.items()
            for score in scores.values()
        ],
    )
