# relais container images: one build, two targets.
#
#   podman build --target edge  -t relais-edge  .     (docker build works the same)
#   podman build --target agent -t relais-agent .
#
# Both run as the unprivileged user relais (uid/gid 10001) and read
# /etc/relais/edge.yaml or /etc/relais/agent.yaml; mount /etc/relais (the
# configuration, keys, tunnel certificate), /var/lib/relais (state,
# certificates) and, for the edge, /var/log/relais (access_log).  The edge
# binary carries the file capability cap_net_bind_service so that it can bind
# 80 and 443 as that user.  Use host networking so that stream ports work:
# see deploy/docker-compose.yml.

# ---- build: compilers and -dev packages, thrown away afterwards -------------
FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
      libwebsockets-dev libssl-dev libsodium-dev libyaml-dev libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY proto/ proto/
COPY common/ common/
COPY edge/ edge/
COPY agent/ agent/
RUN make -j"$(nproc)" build/relais-edge build/relais-agent \
 && install -D -s -m 0755 build/relais-edge /out/usr/bin/relais-edge \
 && install -D -s -m 0755 build/relais-agent /out/usr/bin/relais-agent \
 && setcap cap_net_bind_service=+ep /out/usr/bin/relais-edge

# ---- runtime: only the shared libraries relais links against ----------------
FROM debian:bookworm-slim AS runtime
ARG RELAIS_UID=10001
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libwebsockets17 libssl3 libsodium23 libyaml-0-2 ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid "$RELAIS_UID" relais \
 && useradd --system --no-log-init --uid "$RELAIS_UID" --gid relais \
      --home-dir /var/lib/relais --no-create-home --shell /usr/sbin/nologin relais \
 && install -d -m 0755 /etc/relais \
 && install -d -o relais -g relais -m 0750 /var/lib/relais /var/log/relais
COPY --from=build /out/ /
COPY deploy/edge.example.yaml deploy/agent.example.yaml /usr/share/relais/examples/
USER relais:relais
WORKDIR /var/lib/relais
# SIGTERM drains (at most 10 s): give `docker stop` / `podman stop` -t 15 or more.
STOPSIGNAL SIGTERM

# `podman run relais-agent keygen /etc/relais/agent.key` works too.
FROM runtime AS agent
ENTRYPOINT ["/usr/bin/relais-agent"]
CMD ["-c", "/etc/relais/agent.yaml"]

# The last stage: what a build without --target gives.
FROM runtime AS edge
ENTRYPOINT ["/usr/bin/relais-edge"]
CMD ["-c", "/etc/relais/edge.yaml"]
