# One image for every role: web (`serve`), `worker`, `migrate`. Build: docker build -t mww-exact-gateway .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependency layer first, from the pinned lock, so source changes do not reinstall dependencies.
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY gateway ./gateway
COPY migrations ./migrations
RUN pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GATEWAY_ENV=production HOST=0.0.0.0 PORT=8000
RUN groupadd --system gateway && useradd --system --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
# Alembic scripts are read from the source tree beside the package.
COPY --from=build --chown=gateway:gateway /src/migrations /opt/venv/lib/python3.11/site-packages/migrations
USER gateway
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
