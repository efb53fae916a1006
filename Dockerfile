# The one image for every role: `rewards db upgrade`, `rewards serve`, `rewards worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/rewards

# The dependencies first, pinned with hashes (requirements.lock, which CI keeps current
# with pyproject.toml): their layer is rebuilt only when the lock changes, not the code.
# The lock includes Flower, so the compose file's flower service runs this same image.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && useradd --create-home --uid 10001 rewards

# Only what the package is built from (see .dockerignore); tests and tooling stay out.
COPY pyproject.toml ./
COPY app ./app
COPY api ./api
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-deps .

# Nothing is written at run time: the app is installed in site-packages, Celery beat
# keeps its schedule in memory and gunicorn's heartbeat files go to /tmp.
USER rewards
EXPOSE 8000
CMD ["rewards", "serve", "--host", "0.0.0.0", "--port", "8000"]
