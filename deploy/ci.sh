#!/usr/bin/env bash
# deploy/ci.sh: CI of kdsync's deployment and observability (deploy/,
# docker-compose.yml, docs/operations.md). Run from anywhere:
#
#   bash deploy/ci.sh
#
# It installs what it lacks (Debian: docker.io, docker-compose, prometheus
# for promtool, python3-yaml), starts dockerd when none answers (and stops
# it again at exit), and then:
#   1. promtool: check config, check rules, test rules (rules_test.yml),
#      and the rule tests must fail on each alert's expression broken;
#      deploy/ci_checks.py: alerts complete and documented, every alert
#      tested both ways (after a control run of the re-serialised rules),
#      PrometheusRule == rules.yml, the shipped KDSYNC_* variables are real
#      flags, the manifests agree with each other; deploy/kubecheck: the
#      kustomization built as `kubectl kustomize` would (the kustomize
#      library kubectl embeds; no kubectl needed) and its promises checked,
#      then every manifest and the built output decoded strictly into its
#      Kubernetes API type (a misspelt field fails); docker-compose config.
#   2. the demo (cmd/kddemo) on a free port: promtool check metrics on its /metrics,
#      then a real Prometheus (Debian's) scraping it every 1s with rules.yml:
#      every Grafana panel query must return series, the rules must load.
#   3. deploy/build-images.sh (tag ci<pid>, removed at exit), then
#      docker-compose up nats kdsim kdsync,
#      20 events published with `docker-compose run --rm kdsync publish`,
#      and within 60s every user must be in the simulator in the state its
#      events imply, kdsync's /metrics must show them applied, none
#      dead-lettered.
# Everything it starts listens on 127.0.0.1 and is stopped at exit.
#
# Environment: KEEP_DOCKERD=1 leaves a dockerd that this script started
# running; KDSYNC_CI_SKIP_DOCKER=1 skips docker-compose config and part 3
# (it says so, loudly), and is refused in CI (CI=true or KDSYNC_CI=1): a
# variable inherited there must not turn the check off.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive
# Everything this script talks to is on 127.0.0.1: never through a proxy.
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
export NO_PROXY=$no_proxy
started_at=$(date +%s)

if [ -n "${KDSYNC_CI_SKIP_DOCKER:-}" ] && { [ "${CI:-}" = true ] || [ "${KDSYNC_CI:-}" = 1 ]; }; then
  echo "deploy/ci.sh: FAILED: KDSYNC_CI_SKIP_DOCKER is set in CI (CI=${CI:-} KDSYNC_CI=${KDSYNC_CI:-}): the images and the compose run would not be checked" >&2
  exit 1
fi

step() { printf '\n== [%3ss] %s\n' "$(( $(date +%s) - started_at ))" "$*"; }
run() { echo "+ $*" >&2; "$@"; }
die() { echo; echo "deploy/ci.sh: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kdsync-ci.XXXXXX")
demo_pid="" prom_pid="" dockerd_pid="" compose_project="" images_built=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$compose_project" ]; then
    echo "cleanup: docker-compose down -v ($compose_project)"
    COMPOSE_PROJECT_NAME=$compose_project $COMPOSE down -v --remove-orphans >/dev/null 2>&1
  fi
  if [ -n "$images_built" ]; then
    docker rmi "kdsync:$IMAGE_TAG" "kdsim:$IMAGE_TAG" "nats:$IMAGE_TAG" >/dev/null 2>&1
  fi
  for p in $prom_pid $demo_pid; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  if [ -n "$dockerd_pid" ] && [ -z "${KEEP_DOCKERD:-}" ]; then
    echo "cleanup: stopping the dockerd this script started (pid $dockerd_pid)"
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
  fi
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then
    echo "deploy/ci.sh: PASSED in $(( $(date +%s) - started_at ))s"
  else
    echo "deploy/ci.sh: FAILED (exit $rc) after $(( $(date +%s) - started_at ))s" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for SECONDS COMMAND...: run COMMAND every half second until it
# succeeds; fail after SECONDS.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

step "tools"
need=()
{ command -v promtool && command -v prometheus; } >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
if [ -z "${KDSYNC_CI_SKIP_DOCKER:-}" ]; then
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
fi
PY=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  # The system python, with Debian's PyYAML.
  PY=/usr/bin/python3
  /usr/bin/python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
fi
if [ ${#need[@]} -gt 0 ]; then
  run apt-get update -q
  run apt-get install -y -q "${need[@]}" >"$work/apt.log" 2>&1 \
    || { tail -30 "$work/apt.log"; die "apt-get install ${need[*]}"; }
fi
COMPOSE=docker-compose
command -v docker-compose >/dev/null || COMPOSE="docker compose"
echo "go: $(go version)"
echo "promtool: $(promtool --version 2>&1 | head -1)"
echo "python: $($PY --version) with PyYAML"

step "Prometheus config and rules (promtool)"
run promtool check config deploy/prometheus/prometheus.yml
run promtool check rules deploy/prometheus/rules.yml
run promtool test rules deploy/prometheus/rules_test.yml
run $PY deploy/ci_checks.py mutants

step "consistency checks (deploy/ci_checks.py)"
run go build -o "$work/kdsync" ./cmd/kdsync
run go build -o "$work/kddemo" ./cmd/kddemo   # the demo of the next step but one
"$work/kdsync" run -h >"$work/flags.txt" 2>&1 || true
run $PY deploy/ci_checks.py static "$work/flags.txt"
manifests=("$PWD"/deploy/kubernetes/*.yaml)
# The kustomization built with sigs.k8s.io/kustomize/api (what `kubectl
# kustomize` runs), its output checked with the manifests.
echo "+ (cd deploy/kubecheck && go run . -kustomize $PWD/deploy/kubernetes $work/k8s.yaml ${manifests[*]})   # kustomize build, strict decoding into the Kubernetes API types"
(cd deploy/kubecheck && go run . -kustomize "$PWD/../kubernetes" "$work/k8s.yaml" "${manifests[@]}") \
  || die "the kustomization does not build, or the manifests do not decode strictly"
grep -q '^kind: Deployment' "$work/k8s.yaml" || die "the kustomize build holds no Deployment"

if [ -z "${KDSYNC_CI_SKIP_DOCKER:-}" ]; then
  step "docker-compose config (all services, prometheus and grafana included)"
  run $COMPOSE config -q
  services=$($COMPOSE config --services | sort | tr '\n' ' ')
  echo "services: $services"
  [ "$services" = "grafana kdsim kdsync nats prometheus " ] || die "unexpected services: $services"
fi

step "the demo (kddemo): /metrics through promtool check metrics; a real Prometheus scraping it"
demo_port=$(free_port) prom_port=$(free_port)
prom=http://127.0.0.1:$prom_port
# Prometheus first: its discovery takes a few seconds to hand out the
# target, and the demo runs for 25 seconds only.
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/rules.yml
scrape_configs:
  - job_name: kdsync
    static_configs:
      - targets: ["127.0.0.1:$demo_port"]
EOF
echo "+ prometheus --web.listen-address=127.0.0.1:$prom_port (scrapes 127.0.0.1:$demo_port every 1s, rules.yml loaded) &"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
wait_for 20 curl -sf "$prom/-/ready" || { cat "$work/prometheus.log"; die "Prometheus not ready within 20s"; }

# demo_up: the demo is ready (/readyz: consumer bound, so past the start-up
# that can fail), or has exited (then false at once).
demo_up() {
  kill -0 "$demo_pid" 2>/dev/null || return 2
  curl -sf -o /dev/null "http://127.0.0.1:$demo_port/readyz"
}
echo "+ kddemo -duration 25s -nats-port 0 -http-addr 127.0.0.1:$demo_port -quiet &"
# The binary go run ./cmd/kddemo would build, built above so that compiling
# does not eat into the 25 seconds.
"$work/kddemo" -duration 25s -nats-port 0 -http-addr "127.0.0.1:$demo_port" -quiet >"$work/demo.log" 2>&1 &
demo_pid=$!
deadline=$(( $(date +%s) + 20 ))
while ! demo_up; do
  kill -0 "$demo_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.5
done
demo_up || { cat "$work/demo.log"; die "the demo did not become ready within 20s"; }
run curl -sf -o "$work/demo.metrics" "http://127.0.0.1:$demo_port/metrics"
echo "$(grep -c '^# TYPE' "$work/demo.metrics") metric families, $(grep -vc '^#' "$work/demo.metrics") series"
echo "+ promtool check metrics < demo.metrics"
lint=$(promtool check metrics <"$work/demo.metrics" 2>&1) || { echo "$lint"; die "promtool check metrics"; }
[ -z "$lint" ] || { echo "$lint"; die "promtool check metrics printed problems"; }
echo "promtool check metrics: clean"
run $PY deploy/ci_checks.py names "$work/demo.metrics"

step "every dashboard query returns series from that Prometheus; the rules load"
# About 10 seconds of 1s scrapes, so that rate() has points.
samples() {
  curl -sf "$prom/api/v1/query" --data-urlencode 'query=count_over_time(kdsync_build_info[1m])' \
    | $PY -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)'
}
enough() { [ "$(samples)" -ge 10 ]; }
wait_for 20 enough || { cat "$work/prometheus.log"; echo "scrapes: $(samples)"; die "Prometheus did not scrape the demo 10 times in 20s"; }
echo "Prometheus has $(samples) scrapes of the demo"
run $PY deploy/ci_checks.py queries "$prom" kdsync
kill "$prom_pid" && wait "$prom_pid" 2>/dev/null || true
prom_pid=""
wait "$demo_pid" || { cat "$work/demo.log"; die "the demo exited with an error"; }
demo_pid=""
tail -1 "$work/demo.log"

if [ -n "${KDSYNC_CI_SKIP_DOCKER:-}" ]; then
  echo
  echo "!! KDSYNC_CI_SKIP_DOCKER is set: images, docker-compose config and the compose run were NOT checked !!"
  exit 0
fi

step "Docker engine"
if ! docker info >/dev/null 2>&1; then
  echo "+ dockerd &  (log: $work/dockerd.log)"
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  wait_for 60 docker info || { tail -30 "$work/dockerd.log"; die "dockerd did not start within 60s"; }
fi
echo "docker: client $(docker version -f '{{.Client.Version}}'), engine $(docker version -f '{{.Server.Version}}')"

step "images (deploy/build-images.sh)"
# A tag of this run's own, so that a concurrent build of kdsync:local on the
# same engine (another checkout, a developer) neither breaks nor is broken
# by this run; removed at exit.
export TAG=ci$$ IMAGE_TAG=ci$$
images_built=yes
run bash deploy/build-images.sh

step "docker-compose: nats, kdsim, kdsync; 20 events published; applied in KooDrive (kdsim)"
compose_project=kdsyncci$$
export COMPOSE_PROJECT_NAME=$compose_project
export NATS_PORT KDSIM_PORT KDSYNC_PORT PROMETHEUS_PORT GRAFANA_PORT
NATS_PORT=$(free_port) KDSIM_PORT=$(free_port) KDSYNC_PORT=$(free_port)
PROMETHEUS_PORT=$(free_port) GRAFANA_PORT=$(free_port)
echo "host ports: nats $NATS_PORT, kdsim $KDSIM_PORT, kdsync $KDSYNC_PORT"
compose_logs() { $COMPOSE logs --no-color --tail=60 || true; }
run $COMPOSE up -d nats kdsim kdsync
wait_for 60 curl -sf "http://127.0.0.1:$KDSYNC_PORT/readyz" \
  || { compose_logs; die "kdsync not ready within 60s"; }
echo "kdsync ready: $(curl -s "http://127.0.0.1:$KDSYNC_PORT/readyz")"

hires=12 changes=8
publish() {
  local out
  out=$($COMPOSE run --rm -T kdsync publish -nats-url nats://nats:4222 "$@" 2>&1) \
    || { echo "$out"; compose_logs; die "kdsync publish $*"; }
  echo "$out" | grep -v '^Creating ' || true
}
for i in $(seq 1 $hires); do
  publish -type hired -user "$(( 1008600000000000000 + i ))" -dept 1319678187126486147 -role 1
done
for i in $(seq 1 $changes); do
  publish -type changed -user "$(( 1008600000000000000 + i ))" -role 2
done
stats() { curl -sf "http://127.0.0.1:$KDSIM_PORT/_admin/stats"; }
# final_state: every user in the simulator as its events imply: department
# 1319678187126486147, enabled, role 2 for the first $changes (hired with
# role 1, then changed), role 1 for the rest; prints what differs.
final_state() {
  curl -sf "http://127.0.0.1:$KDSIM_PORT/_admin/users" | $PY -c "
import json, sys
users = {u['userId']: u for u in json.load(sys.stdin)['users']}
bad = []
for i in range(1, $hires + 1):
    uid = str(1008600000000000000 + i)
    want = {'deptId': '1319678187126486147', 'role': 2 if i <= $changes else 1, 'status': 0}
    u = users.get(uid)
    got = {k: u[k] for k in want} if u else None
    if got != want:
        bad.append(f'{uid}: {got}, want {want}')
extra = sorted(set(users) - {str(1008600000000000000 + i) for i in range(1, $hires + 1)})
if extra:
    bad.append(f'users no event made: {extra}')
print('\n'.join(bad))
sys.exit(1 if bad else 0)"
}
if ! wait_for 60 final_state; then
  echo "kdsim stats: $(stats)"; echo "differences:"; final_state || true; compose_logs
  die "the simulator's users are not in the state their $hires hires and $changes changes imply within 60s"
fi
echo "all $hires users in the simulator as their events imply"
echo "kdsim stats: $(stats | $PY -c 'import json,sys; s=json.load(sys.stdin); print({k: s[k] for k in ("requests", "creates", "updates", "writes", "authFailures", "invalid")})')"
# kdsync's own account: every event finished as applied, none
# dead-lettered. A kdsync that does not answer fails here.
metrics=$(curl -sf "http://127.0.0.1:$KDSYNC_PORT/metrics") || { compose_logs; die "kdsync's /metrics does not answer"; }
finished=$(echo "$metrics" | grep '^kdsync_events_finished_total' | grep -v ' 0$' || true)
echo "kdsync_events_finished_total (non-zero):"; echo "$finished"
echo "$finished" | grep -q 'result="deadlettered"' && { compose_logs; die "events were dead-lettered"; }
applied_total=$(echo "$metrics" | $PY -c '
import re, sys
print(int(sum(float(m.group(1)) for m in re.finditer(r"^kdsync_events_finished_total\{[^}]*result=\"applied\"[^}]*\} (\S+)$", sys.stdin.read(), re.M))))')
[ "$applied_total" -eq $(( hires + changes )) ] || { compose_logs; die "kdsync counts $applied_total events applied, want $(( hires + changes ))"; }
run $COMPOSE down -v --remove-orphans
compose_project=""
