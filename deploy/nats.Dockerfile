# nats-server with JetStream, built from the nats-server module that go.mod
# pins (github.com/nats-io/nats-server/v2), so the broker of the local stack
# is the version kdsync's tests run against.
#
# Build context: a folder holding a static nats-server binary,
# ca-certificates.crt and an empty data/ folder; deploy/build-images.sh
# makes it.
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="nats-server" \
      org.opencontainers.image.description="NATS server with JetStream, as pinned by kdsync's go.mod" \
      org.opencontainers.image.source="https://github.com/nats-io/nats-server" \
      org.opencontainers.image.version="${VERSION}"

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY nats-server /nats-server
# The JetStream store, owned by the user the server runs as, so that a
# named volume mounted here inherits that owner.
COPY --chown=65534:65534 data/ /data/

USER 65534:65534
# 4222 clients, 8222 monitoring (/healthz, /varz, /jsz).
EXPOSE 4222 8222
VOLUME ["/data"]
ENTRYPOINT ["/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
