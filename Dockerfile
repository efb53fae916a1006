# The one image for every role: `rewards db upgrade`, `rewards serve`, `rewards worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/rewards

# Only what the package is built from (see .dockerignore); tests and tooling stay out.
COPY pyproject.toml ./
COPY app ./app
COPY api ./api
COPY workers ./workers
COPY migrations ./migrations
# Optional extras, e.g. "[flower]" for the compose file's flower service.
ARG EXTRAS=""
RUN pip install ".${EXTRAS}" && useradd --create-home --uid 10001 rewards

# Nothing is written at run time: the app is installed in site-packages, Celery beat
# keeps its schedule in memory and gunicorn's heartbeat files go to /tmp.
USER rewards
EXPOSE 8000
CMD ["rewards", "serve", "--host", "0.0.0.0", "--port", "8000"]
