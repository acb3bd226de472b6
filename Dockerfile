# syntax=docker/dockerfile:1
# Build stage: build the wheel of sparkwatch and of every dependency.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Run stage: only the wheels, no compiler, no sources; runs as a non-root user (uid 10001),
# which is all the cluster-level targets need (Spark UIs, history servers, Livy, ZooKeeper).
#
# The root variant, for watching the JVMs of every user of a host (the Kubernetes overlay
# deploy/kubernetes/variants/all-users does the same): the same image, run as uid 0 in
# the host's process namespace with every capability dropped but the two the jvm
# collector needs (SYS_PTRACE and DAC_READ_SEARCH; see docs/deploy.md). The JVMs of one
# user alone need none: run it as that uid and gid (--user=185:185) without --cap-add.
#   docker run --pid=host --user=0 --cap-drop=ALL --cap-add=SYS_PTRACE \
#     --cap-add=DAC_READ_SEARCH --security-opt=no-new-privileges --read-only -p 9951:9951 \
#     -v $PWD/sparkwatch.yml:/etc/sparkwatch.yml:ro sparkwatch --config.file=/etc/sparkwatch.yml
# With `attach: true`: --cap-add=SYS_PTRACE --cap-add=DAC_OVERRIDE --cap-add=KILL instead.
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="sparkwatch" \
      org.opencontainers.image.description="Prometheus exporter for long-running Apache Spark services"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sparkwatch
USER 10001
EXPOSE 9951
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9951/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["sparkwatch"]
CMD ["--web.listen-address=:9951"]
