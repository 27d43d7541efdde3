# The PayGate app image: gunicorn (gthread) running app:create_app() with gunicorn.conf.py.
# Built by `docker compose up --build`; the image holds only the app, never loadtest or tests.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/paygate-metrics

# A fixed, non-root uid so files in mounted volumes have a predictable owner.
RUN groupadd --system --gid 10001 paygate \
 && useradd --system --uid 10001 --gid paygate --home-dir /app --no-create-home --shell /usr/sbin/nologin paygate

WORKDIR /app

# The exact pins of pyproject.toml's [project] dependencies, in their own layer:
# editing the code does not reinstall them, editing a pin does.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir --requirement /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY gunicorn.conf.py ./
COPY app ./app

# Numeric, so a runtime that checks runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000

# Liveness only, like /health itself: green while gunicorn answers. The port follows BIND.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('BIND', ':8000').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2)"]

CMD ["gunicorn", "--config", "gunicorn.conf.py"]
