# dotbridge with the search gateway (`dotbridge serve`); docker-compose.yml runs it between
# OpenSearch Dashboards and OpenSearch. CPU torch from PyPI; pass --device cuda on a GPU host.
# Python 3.11: the version the lock (constraints.txt) was resolved for.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 HF_HOME=/cache/huggingface
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY bridge bridge
COPY ingest ingest
COPY mappings mappings
RUN pip install -c constraints.txt '.[serve]' && useradd --create-home dotbridge && mkdir -p /cache \
    && chown dotbridge /cache
USER dotbridge
EXPOSE 9210
ENTRYPOINT ["dotbridge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9210"]
