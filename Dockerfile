# The leadedge worker: `faust -A leadedge worker`, configured by LEADEDGE_* variables.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY leadedge ./leadedge
COPY agents ./agents
COPY tables ./tables
RUN pip install --no-cache-dir -c constraints.txt ".[fast]"

# Faust's web server: GET /requests/{id}, /health
EXPOSE 6066
VOLUME /data
CMD ["faust", "--datadir", "/data", "-A", "leadedge", "worker", "-l", "info"]
