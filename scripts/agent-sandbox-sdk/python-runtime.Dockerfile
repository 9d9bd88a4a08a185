# agent-sandbox's python-runtime-sandbox (examples/python-runtime-sandbox in its Go module), made where no
# container registry answers (scripts/agent-sandbox-sdk.sh): their main.py served by uvicorn on port 8888
# as user 1000, as their Dockerfile does, on the local Debian base with Debian's python3 (their image is
# python:3.14-slim) and the hash-checked wheels of its API server (fastapi, uvicorn, python-multipart).
ARG BASE
FROM ${BASE}
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt ./
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --no-cache-dir --no-index --find-links /tmp/wheels --require-hashes -r requirements.txt \
 && rm -rf /tmp/wheels
COPY main.py ./
RUN chown -R 1000:1000 /app
USER 1000
EXPOSE 8888
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT []
CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8888"]
