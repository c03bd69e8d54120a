# syntax=docker/dockerfile:1
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ACCEPT_EULA=Y

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Microsoft ODBC Driver 18 for SQL Server (for the mssql extra / pyodbc). Debian and Microsoft
# replace old package versions in their repositories, so exact pins would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl gnupg ca-certificates unixodbc \
    && curl -fsSL https://packages.microsoft.com/keys/microsoft.asc \
       | gpg --dearmor -o /usr/share/keyrings/microsoft-prod.gpg \
    && curl -fsSL https://packages.microsoft.com/config/debian/12/prod.list \
       > /etc/apt/sources.list.d/mssql-release.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends msodbcsql18 \
    && apt-get purge -y --auto-remove curl gnupg \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 cwi \
    && mkdir -p /var/lib/cwi \
    && chown 10001:10001 /var/lib/cwi
WORKDIR /app

COPY pyproject.toml README.md LICENSE ./
COPY contracts ./contracts
COPY config_db ./config_db
COPY providers ./providers
COPY worker ./worker
# The project itself is installed from source; its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[azure,mssql,postgres,tracing]'

# The default SQLite database lives where the non-root user can write (mount a volume there, or set
# CWI_DATABASE_URL to PostgreSQL / SQL Server). `cwi run` serves /healthz, /readyz and /metrics on
# CWI_METRICS_PORT; `cwi serve` serves them beside the webhooks on its --port (8080 by default).
ENV CWI_DATABASE_URL=sqlite:////var/lib/cwi/cwi.db \
    CWI_METRICS_HOST=0.0.0.0 \
    CWI_METRICS_PORT=9464
VOLUME ["/var/lib/cwi"]
EXPOSE 9464 8080

USER 10001
# Liveness, not readiness: a worker riding out a database outage is alive (its /readyz says 503).
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CWI_METRICS_PORT', '9464') + '/healthz', timeout=4)"]
ENTRYPOINT ["cwi"]
CMD ["run"]
