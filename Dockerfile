# syntax=docker/dockerfile:1
# Build stage: build the wheel of sparkwatch and of every dependency.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Run stage: only the wheels, no compiler, no sources; runs as a non-root user.
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="sparkwatch" \
      org.opencontainers.image.description="Prometheus exporter for long-running Apache Spark services"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sparkwatch
USER 10001
EXPOSE 9951
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9951/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["sparkwatch"]
CMD ["--web.listen-address=:9951"]
