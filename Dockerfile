# Nova Voice: the embedded server (peers, VAD, captions and Whisper in one process).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY pipeline ./pipeline
COPY web ./web
RUN pip install --no-cache-dir -e .
ENV NOVA_HOST=0.0.0.0 NOVA_PORT=8080 NOVA_DATA_DIR=/data
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health')"
ENTRYPOINT ["nova-voice", "serve"]
