#!/usr/bin/env python3
"""Checks of deploy/ that no off-the-shelf tool makes; deploy/ci.sh runs them.

  ci_checks.py static FLAGS_FILE
      The deliverable agrees with itself and with kdsync: FLAGS_FILE is the
      output of `kdsync run -h`; every KDSYNC_* variable shipped (ConfigMap
      env file, Secret template, docker-compose.yml) must be one of its
      flags. Every alert has for/severity/summary/description/runbook, a
      runbook section in docs/operations.md, and a test where it fires and
      one where it does not. The PrometheusRule holds rules.yml verbatim.
      The Deployment's grace period outlasts the shutdown timeout.

  ci_checks.py exprs
      Prints the dashboard's panel queries, one JSON object a line.

  ci_checks.py names METRICS_FILE
      Every kdsync_* metric the dashboard and the rules name is exposed in
      METRICS_FILE (a /metrics scrape).

  ci_checks.py queries PROMETHEUS_URL RULES_GROUPS
      Runs every dashboard query against PROMETHEUS_URL (template variables
      substituted), prints query -> series, and fails on any error or empty
      result; asks for the key series by name (KEY_SERIES) and checks their
      values are plausible for a demo that applies events; checks that /api/v1/rules has loaded RULES_GROUPS
      (comma-separated) with all of rules.yml's alerts.

  ci_checks.py mutants
      The rule tests can fail: after a control run (rules.yml re-serialised
      as the mutants are, unchanged, must pass), for each alert a copy of
      rules.yml whose expression for that alert never fires (`vector(0) >
      1`) and one where it always fires (`vector(1)`, no labels) must each
      make a test of `promtool test rules` fail (an expectation not met:
      another error, such as rules that do not load, is not a catch);
      prints promtool's complaint for the first.

Needs PyYAML. Exit status 1 on the first failed check group, with every
problem of that group listed.
"""

import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "kdsync.json"
K8S = DEPLOY / "kubernetes"
COMPOSE = ROOT / "docker-compose.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Grafana's template variables, as a query would see them over a short run.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "15s",
    "${__interval}": "15s",
    "$__range": "5m",
    "${__range}": "5m",
}

# Variables kdsync reads that are not flags of `kdsync run` but are fine to
# ship: the Go runtime's.
NON_FLAG_VARS = {"GOMEMLIMIT", "GOMAXPROCS", "GOGC"}
SECRET_VARS = {"KDSYNC_APP_SECRET", "KDSYNC_API_TOKEN", "KDSYNC_NATS_PASSWORD", "KDSYNC_NATS_TOKEN"}


# Key series and what a demo that applies events must show for them.
KEY_SERIES = [
    ('sum(kdsync_events_finished_total{result="applied"})', lambda v: v > 0),
    ('sum(kdsync_events_received_total)', lambda v: v > 0),
    ('sum(rate(kdsync_event_latency_seconds_count[1m]))', lambda v: v > 0),
    ('sum(kdsync_koodrive_requests_total{code_class="ok"})', lambda v: v > 0),
    ('kdsync_consumer_pending_events', lambda v: v >= 0),
    ('kdsync_nats_connected', lambda v: v == 1),
    ('kdsync_breaker_state', lambda v: v in (0, 1, 2)),
    ('kdsync_build_info', lambda v: v == 1),
    ('up{job="kdsync"}', lambda v: v == 1),
]


def fail(title, problems):
    if problems:
        print(f"FAIL: {title}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {title}")


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def alerts():
    out = []
    for g in load_yaml(RULES)["groups"]:
        out.extend(r for r in g["rules"] if "alert" in r)
    return out


def env_file(path):
    env = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, sep, v = line.partition("=")
        if not sep or k != k.strip() or not re.fullmatch(r"[A-Z][A-Z0-9_]*", k):
            raise SystemExit(f"{path}:{n}: not KEY=value: {line!r}")
        env[k] = v
    return env


def duration_seconds(s):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, rest = 0.0, s
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s):
        total += float(num) * units[unit]
        rest = rest.replace(num + unit, "", 1)
    if rest or not s:
        raise SystemExit(f"not a duration: {s!r}")
    return total


def anchor(heading):
    """GitHub's anchor of a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def check_rules():
    problems = []
    names = [a["alert"] for a in alerts()]
    if len(set(names)) != len(names):
        problems.append(f"duplicate alert names: {names}")
    anchors = {anchor(m) for m in re.findall(r"^#+\s+(.*)$", OPERATIONS.read_text(), re.M)}
    for a in alerts():
        n = a["alert"]
        if not a.get("for"):
            problems.append(f"{n}: no for:")
        if a.get("labels", {}).get("severity") not in ("critical", "warning"):
            problems.append(f"{n}: severity must be critical or warning")
        ann = a.get("annotations", {})
        for k in ("summary", "description", "runbook"):
            if not ann.get(k):
                problems.append(f"{n}: no {k} annotation")
        want = "docs/operations.md#" + n.lower()
        if not ann.get("runbook", "").startswith(want):
            problems.append(f"{n}: runbook must start with {want}")
        if n.lower() not in anchors:
            problems.append(f"{n}: docs/operations.md has no heading '{n}'")
    fail("alert rules: for, severity, annotations, runbook sections", problems)

    problems = []
    fires, quiet = set(), set()
    for t in load_yaml(RULES_TEST)["tests"]:
        for c in t.get("alert_rule_test", []):
            (fires if c.get("exp_alerts") else quiet).add(c["alertname"])
    for n in names:
        if n not in fires:
            problems.append(f"{n}: no test where it fires")
        if n not in quiet:
            problems.append(f"{n}: no test where it does not fire")
    fail("every alert has a firing and a quiet unit test", problems)

    pr = load_yaml(K8S / "prometheusrule.yaml")
    same = pr.get("spec", {}).get("groups") == load_yaml(RULES)["groups"]
    fail("PrometheusRule spec.groups == deploy/prometheus/rules.yml",
         [] if same else ["they differ: regenerate prometheusrule.yaml (see its header)"])


def check_config(flags_file):
    text = pathlib.Path(flags_file).read_text()
    flags = set(re.findall(r"^\s+-([a-z][a-z0-9-]*)", text, re.M))
    if "nats-url" not in flags:
        raise SystemExit(f"{flags_file}: no -nats-url: not the output of kdsync run -h?")
    known = {"KDSYNC_" + f.upper().replace("-", "_") for f in flags}

    problems = []
    shipped = env_file(K8S / "kdsync.env")
    for k, v in shipped.items():
        if k not in known:
            problems.append(f"kdsync.env: {k} is not a flag of kdsync run")
        if k in SECRET_VARS:
            problems.append(f"kdsync.env: {k} is a secret; it belongs in the Secret")
        if v == "":
            problems.append(f"kdsync.env: {k} is empty")
    secret = load_yaml(K8S / "secret.example.yaml")
    for k in secret.get("stringData", {}):
        if k not in known:
            problems.append(f"secret.example.yaml: {k} is not a flag of kdsync run")
    compose = load_yaml(COMPOSE)
    svc = compose["services"]["kdsync"]
    if "deploy/kubernetes/kdsync.env" not in svc.get("env_file", []):
        problems.append("docker-compose.yml: kdsync does not load deploy/kubernetes/kdsync.env")
    for k in svc.get("environment", {}):
        if k not in known | NON_FLAG_VARS:
            problems.append(f"docker-compose.yml: {k} is not a flag of kdsync run")
    fail("KDSYNC_* variables shipped are kdsync's flags; no secret in the ConfigMap", problems)

    problems = []
    kust = load_yaml(K8S / "kustomization.yaml")
    for r in kust["resources"]:
        if not (K8S / r).exists():
            problems.append(f"kustomization.yaml: {r} does not exist")
    gens = {g["name"]: g for g in kust.get("configMapGenerator", [])}
    dep = load_yaml(K8S / "deployment.yaml")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    refs = {k: v["name"] for e in c.get("envFrom", []) for k, v in e.items()}
    if refs.get("configMapRef") not in gens:
        problems.append("deployment: envFrom configMapRef is not the generated ConfigMap")
    if refs.get("secretRef") != secret["metadata"]["name"]:
        problems.append("deployment: envFrom secretRef is not secret.example.yaml's name")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    shutdown = duration_seconds(shipped.get("KDSYNC_SHUTDOWN_TIMEOUT", "20s"))
    if grace < shutdown + 10:
        problems.append(f"deployment: terminationGracePeriodSeconds {grace} < KDSYNC_SHUTDOWN_TIMEOUT {shutdown:g}s + 10s")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append("deployment: livenessProbe is not /healthz")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append("deployment: readinessProbe is not /readyz")
    port = int(shipped.get("KDSYNC_HTTP_ADDR", ":9090").rsplit(":", 1)[1])
    if [p["containerPort"] for p in c.get("ports", [])] != [port]:
        problems.append(f"deployment: containerPort is not KDSYNC_HTTP_ADDR's {port}")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append("deployment: runAsNonRoot is not set")
    partitions = int(shipped.get("KDSYNC_PARTITIONS", "0"))
    replicas = dep["spec"].get("replicas", 1)
    if partitions == 0 and (replicas != 1 or dep["spec"].get("strategy", {}).get("type") != "Recreate"):
        problems.append("deployment: without KDSYNC_PARTITIONS kdsync must run as one replica, strategy Recreate")
    if partitions > 0 and replicas > partitions:
        problems.append(f"deployment: {replicas} replicas for {partitions} partitions: some would idle")
    if "resources" not in c or "requests" not in c["resources"]:
        problems.append("deployment: no resource requests")
    if compose["services"]["kdsync"].get("stop_grace_period") != f"{grace}s":
        problems.append(f"docker-compose.yml: kdsync's stop_grace_period is not {grace}s as in Kubernetes")
    sel = dep["spec"]["selector"]["matchLabels"]
    for f in ("service.yaml", "poddisruptionbudget.yaml"):
        d = load_yaml(K8S / f)
        s = d["spec"]["selector"]
        s = s.get("matchLabels", s)
        if s != sel:
            problems.append(f"{f}: selector {s} is not the Deployment's {sel}")
    sm = load_yaml(K8S / "servicemonitor.yaml")
    svc_ports = [p["name"] for p in load_yaml(K8S / "service.yaml")["spec"]["ports"]]
    for e in sm["spec"]["endpoints"]:
        if e.get("port") not in svc_ports or e.get("path", "/metrics") != "/metrics":
            problems.append(f"servicemonitor.yaml: endpoint {e} is not the Service's /metrics")
    fail("Kubernetes manifests agree with each other and with kdsync", problems)

    problems = []
    for df in ("Dockerfile", "kdsim.Dockerfile", "nats.Dockerfile"):
        t = (DEPLOY / df).read_text()
        for want in ("FROM scratch", "USER 65534:65534", "ENTRYPOINT [", "EXPOSE "):
            if want not in t:
                problems.append(f"deploy/{df}: no {want}")
    fail("Dockerfiles: FROM scratch, numeric non-root user", problems)


def dashboard_queries():
    d = json.loads(DASHBOARD.read_text())
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append({"panel": p.get("title", ""), "ref": t.get("refId", ""), "expr": t["expr"]})

    walk(d.get("panels", []))
    return d, out


def check_dashboard():
    d, qs = dashboard_queries()
    problems = []
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            walk(p.get("panels", []))
            if p.get("type") == "row":
                continue
            if not p.get("title"):
                problems.append(f"panel {p.get('id')}: no title")
            if not p.get("targets"):
                problems.append(f"panel {p.get('title')}: no query")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"panel {p.get('title')}: query {t.get('refId')} is not on ${{datasource}}")

    walk(d["panels"])
    cells = {}
    for p in d["panels"]:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            problems.append(f"panel {p.get('title')}: wider than the grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"panel {p.get('title')} overlaps {cells[(x, y)]}")
                cells[(x, y)] = p.get("title")
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    if not d.get("uid"):
        problems.append("the dashboard has no uid")
    for q in qs:
        left = re.findall(r"\$\{?\w+\}?", substitute(q["expr"]))
        if left:
            problems.append(f"{q['panel']}: unknown template variables {left}")
    fail(f"dashboard: {len(qs)} queries, ids, layout, datasource variable", sorted(set(problems)))


def substitute(expr):
    for k in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(k, SUBSTITUTIONS[k])
    return expr


def metric_names(exprs):
    names = set()
    for e in exprs:
        names.update(re.findall(r"\b(kdsync_[a-z_]+)", e))
    return names


def check_names(metrics_file):
    text = pathlib.Path(metrics_file).read_text()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    series = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, re.M))
    exprs = [q["expr"] for q in dashboard_queries()[1]] + [a["expr"] for a in alerts()]
    problems = []
    for n in sorted(metric_names(exprs)):
        if n not in series and n not in families:
            problems.append(f"{n} is named in the dashboard or the rules but kdsync does not expose it")
    fail(f"the {len(metric_names(exprs))} kdsync_* names in the dashboard and rules are exposed", problems)


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def check_queries(prom, groups):
    _, qs = dashboard_queries()
    problems = []
    width = min(max(len(substitute(q["expr"])) for q in qs), 110)
    print(f"{'query':<{width}}  series")
    for q in qs:
        e = substitute(q["expr"])
        try:
            r = get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": e}))
        except Exception as err:  # an HTTP 400 for a bad query lands here
            body = getattr(err, "read", lambda: b"")().decode(errors="replace")
            problems.append(f"{q['panel']} [{q['ref']}]: {e}: {err} {body}")
            print(f"{e[:width]:<{width}}  ERROR")
            continue
        n = len(r.get("data", {}).get("result", [])) if r.get("status") == "success" else -1
        shown = e if len(e) <= width else e[: width - 3] + "..."
        print(f"{shown:<{width}}  {n}")
        if n < 1:
            problems.append(f"{q['panel']} [{q['ref']}]: {e}: status {r.get('status')}, {n} series")
    fail(f"all {len(qs)} dashboard queries return series", problems)

    # The key series, asked for by name, whatever the dashboard shows: the
    # demo applies events, so these must be there with these values.
    problems = []
    for e, want in KEY_SERIES:
        r = get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": e}))
        res = r.get("data", {}).get("result", [])
        got = [float(x["value"][1]) for x in res]
        print(f"{e}  {got}")
        if not got or not all(want(v) for v in got):
            problems.append(f"{e}: got {got}")
    fail(f"{len(KEY_SERIES)} key series present with plausible values", problems)

    r = get(prom + "/api/v1/rules")
    loaded = {g["name"]: g for g in r["data"]["groups"]}
    problems = []
    want = {a["alert"] for a in alerts()}
    got = set()
    for g in groups.split(","):
        if g not in loaded:
            problems.append(f"rule group {g} not loaded (loaded: {sorted(loaded)})")
            continue
        for rule in loaded[g]["rules"]:
            if rule.get("health") not in ("ok", "unknown"):
                problems.append(f"rule {rule.get('name')}: health {rule.get('health')}: {rule.get('lastError')}")
            got.add(rule.get("name"))
    if want - got:
        problems.append(f"alerts not loaded: {sorted(want - got)}")
    fail(f"Prometheus loaded rule groups {groups} ({len(got)} rules, all healthy)", problems)


def failed_a_test(res):
    """Whether promtool test rules failed on a test's expectation (its
    report shows what was expected and what came), not on an error such as
    a rules file that does not load."""
    out = res.stdout + res.stderr
    return res.returncode != 0 and re.search(r"^\s*exp:", out, re.M) and re.search(r"^\s*got:", out, re.M)


def check_mutants():
    """Every alert's tests catch a broken expression, both ways."""
    names = [r["alert"] for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]
    kinds = (("never fires", "vector(0) > 1"), ("always fires", "vector(1)"))

    def run(job):
        name, kind, expr = job
        mutant = load_yaml(RULES)
        for g in mutant["groups"]:
            for r in g["rules"]:
                if r.get("alert") == name:
                    r["expr"] = expr
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(RULES_TEST, pathlib.Path(tmp) / RULES_TEST.name)
            with open(pathlib.Path(tmp) / RULES.name, "w") as f:
                yaml.safe_dump(mutant, f, sort_keys=False)
            res = subprocess.run(["promtool", "test", "rules", RULES_TEST.name],
                                 cwd=tmp, capture_output=True, text=True)
        return job, res

    # The control: the rules re-serialised the way the mutants are, none
    # changed, must pass. Otherwise every "caught" mutant proves nothing.
    _, control = run((None, "control", None))
    if control.returncode != 0:
        print((control.stdout + control.stderr)[:2000])
        fail("control run: the re-serialised, unchanged rules pass promtool test rules",
             [f"promtool test rules exits {control.returncode} on the unchanged rules"])
    print("control run: the re-serialised, unchanged rules pass their tests")

    jobs = [(n, k, e) for n in names for k, e in kinds]
    problems, shown = [], False
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for (name, kind, expr), res in pool.map(run, jobs):
            if res.returncode == 0:
                problems.append(f"{name}: expression replaced by `{expr}` ({kind}), yet promtool test rules passes")
            elif not failed_a_test(res):
                out = " | ".join(l.strip() for l in (res.stdout + res.stderr).splitlines() if l.strip())[:300]
                problems.append(f"{name} with `{expr}` ({kind}): promtool exits {res.returncode} without a failed expectation: {out}")
            elif not shown:
                shown = True
                out = [l for l in (res.stdout + res.stderr).splitlines() if l.strip()]
                print(f"e.g. {name} with `{expr}` ({kind}): promtool test rules exits {res.returncode}:")
                for line in out[:6]:
                    print(f"    {line[:160]}")
    fail(f"rule tests fail for each of {len(names)} alerts broken both ways ({len(jobs)} mutants)", problems)

def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd = argv[1]
    if cmd == "static" and len(argv) == 3:
        check_rules()
        check_config(argv[2])
        check_dashboard()
    elif cmd == "exprs" and len(argv) == 2:
        for q in dashboard_queries()[1]:
            print(json.dumps(q))
    elif cmd == "mutants" and len(argv) == 2:
        check_mutants()
    elif cmd == "names" and len(argv) == 3:
        check_names(argv[2])
    elif cmd == "queries" and len(argv) == 4:
        check_queries(argv[2].rstrip("/"), argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
