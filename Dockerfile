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

RUN useradd --create-home --uid 10001 cwi
WORKDIR /app

COPY pyproject.toml README.md LICENSE ./
COPY contracts ./contracts
COPY config_db ./config_db
COPY providers ./providers
COPY worker ./worker
# The project itself is installed from source; its dependency ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[azure,mssql,postgres]'

USER 10001
ENTRYPOINT ["cwi"]
CMD ["run"]
