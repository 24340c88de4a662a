# kdsim: the KooDrive simulator, for local stacks (docker-compose.yml) and
# end-to-end tests. Never point it at real data: it keeps users in memory.
#
# Build context: a folder holding a static kdsim binary and
# ca-certificates.crt; deploy/build-images.sh makes it.
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="kdsim" \
      org.opencontainers.image.description="KooDrive user API simulator for kdsync" \
      org.opencontainers.image.source="https://github.com/kdsync/kdsync" \
      org.opencontainers.image.version="${VERSION}"

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY kdsim /kdsim

USER 65534:65534
# The API under /koodrive/ose/v1 and the admin API under /_admin/.
EXPOSE 8090
ENTRYPOINT ["/kdsim"]
# kdsim listens on 127.0.0.1 by default; in a container it must listen on
# all interfaces. Credentials come from KDSIM_APP_ID / KDSIM_APP_SECRET
# (or KDSIM_TOKEN).
CMD ["-addr", ":8090"]
