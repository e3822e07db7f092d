# The dashboard on the offline demo market; `docker compose up` adds PostgreSQL for the case log.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SURVEILLANCE_DATA_DIR=/data

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. psycopg: the PostgreSQL case log.
COPY requirements.txt ./
RUN pip install -r requirements.txt "psycopg[binary]==3.3.9"

COPY . .
# The `surveil` command (batch scans); the dependencies are already installed.
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 surveil \
    && mkdir -p /data && chown surveil /data

USER surveil
VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"]

CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
