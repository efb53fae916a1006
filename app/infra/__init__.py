"""Infrastructure the domain rules stand on, apart from them: the drain-key protocol, the
Redis completion channel, the rate limiter, group commit, COPY and array literals for
PostgreSQL, and the Redis client settings. No business rule lives here."""
