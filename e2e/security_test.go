package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kdsync/kdsync/checker"
	"github.com/kdsync/kdsync/internal/harness"
	"github.com/kdsync/kdsync/internal/natsembed"
	"github.com/kdsync/kdsync/internal/testenv"
	"github.com/kdsync/kdsync/kdapi"
	"github.com/kdsync/kdsync/kdsim"
	"github.com/kdsync/kdsync/workload"
)

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type pki struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	server                                           tls.Certificate
	pool                                             *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kdsync e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{CA: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (certPath, keyPath string, pair tls.Certificate) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips, DNSNames: dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certPath = write(cn+".pem", "CERTIFICATE", der)
		keyPath = write(cn+"-key.pem", "EC PRIVATE KEY", kder)
		pair, err = tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		return certPath, keyPath, pair
	}
	p.ServerCert, p.ServerKey, p.server = leaf(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	p.ClientCert, p.ClientKey, _ = leaf(3, "client", x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

// serverTLS is the broker's TLS configuration; mutual requires a client
// certificate signed by the CA.
func (p *pki) serverTLS(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS12}
	if mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.pool
	}
	return c
}

// runSmall runs kdsync as a process with env until a small workload is
// applied, checks it, stops kdsync with SIGTERM and returns its log.
func runSmall(t *testing.T, scenario string, natsURL string, nc *nats.Conn, sim *harness.Sim, env []string, seed uint64, amb checker.Ambiguity, faults string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	evs, err := workload.Generate(workload.Options{Users: 100, EventsPerUser: 3, Departments: sim.Departments(), Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	start := time.Now()
	d := startDaemon(t, append(kdsyncEnv(natsURL, sim.URL, httpAddr), env...), logPath)
	if err := waitReady(ctx, d, httpAddr); err != nil {
		t.Fatal(err, d.tail())
	}
	outcomes, err := harness.CollectOutcomes(ctx, nc, "KDSYNC_OUTCOMES")
	if err != nil {
		t.Fatal(err)
	}
	defer outcomes.Stop()
	if _, err := feed(ctx, nc, "IDENTITY", evs, 0); err != nil {
		t.Fatal(err)
	}
	if err := outcomes.WaitFor(ctx, len(evs)); err != nil {
		t.Fatal(err, d.tail())
	}
	wall := time.Since(start)
	if took, err := d.stop(t, 30*time.Second); err != nil {
		t.Errorf("kdsync stop after %s: %v", took, err)
	}
	if err := collectAll(ctx, nc, outcomes); err != nil {
		t.Fatal(err)
	}
	verify(t, scenario, evs, sim, outcomes, amb, faults, wall)
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNATSTLSAndCredentials runs kdsync against a broker that requires TLS
// (a CA made by the test) and credentials: a token, a user and password,
// and a client certificate. Each run applies its events; the credentials
// never appear in kdsync's log. Without the CA, or with a wrong token,
// kdsync refuses to go on, and says why without the secret.
func TestNATSTLSAndCredentials(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	seed := testSeed(t)
	bins.path(t, "kdsync") // built before the clock starts
	p := newPKI(t)
	const token, user, password = "nats-token-5b1e0c9d7a", "kdsync", "nats-password-c41f86e2"
	cases := map[string]struct {
		server natsembed.Options
		env    []string
		client []nats.Option
	}{
		"tls+token": {
			server: natsembed.Options{TLS: p.serverTLS(false), Token: token},
			env:    []string{"KDSYNC_NATS_CA=" + p.CA, "KDSYNC_NATS_TOKEN=" + token},
			client: []nats.Option{nats.RootCAs(p.CA), nats.Token(token)},
		},
		"tls+user-password": {
			server: natsembed.Options{TLS: p.serverTLS(false), User: user, Password: password},
			env:    []string{"KDSYNC_NATS_CA=" + p.CA, "KDSYNC_NATS_USER=" + user, "KDSYNC_NATS_PASSWORD=" + password},
			client: []nats.Option{nats.RootCAs(p.CA), nats.UserInfo(user, password)},
		},
		"mutual-tls+token": {
			server: natsembed.Options{TLS: p.serverTLS(true), Token: token},
			env: []string{"KDSYNC_NATS_CA=" + p.CA, "KDSYNC_NATS_CERT=" + p.ClientCert, "KDSYNC_NATS_KEY=" + p.ClientKey,
				"KDSYNC_NATS_TOKEN=" + token},
			client: []nats.Option{nats.RootCAs(p.CA), nats.ClientCert(p.ClientCert, p.ClientKey), nats.Token(token)},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ns := startSingle(t, tc.server)
			url := "tls://" + strings.TrimPrefix(ns.URL(), "nats://")
			// The broker refuses plain connections and connections without
			// the credentials.
			if nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(0)); err == nil {
				nc.Close()
				t.Fatal("a plain connection without credentials was accepted")
			}
			nc := connect(t, url, tc.client...)
			sim, err := harness.StartSim(kdsim.Options{Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			log := runSmall(t, "nats-"+name, url, nc, sim, tc.env, seed, checker.Ambiguity{}, "none; broker requires "+name)
			for _, secret := range []string{token, password, harness.AppSecret.Reveal()} {
				if strings.Contains(log, secret) {
					t.Errorf("kdsync's log shows the secret %q", secret)
				}
			}
		})
	}

	// Refusals: kdsync stops with an error that names the cause and not
	// the secret.
	ns := startSingle(t, natsembed.Options{TLS: p.serverTLS(false), Token: token})
	url := "tls://" + strings.TrimPrefix(ns.URL(), "nats://")
	refusals := map[string]struct {
		env  []string
		want string
	}{
		"no CA":       {[]string{"KDSYNC_NATS_TOKEN=" + token}, "certificate"},
		"wrong token": {[]string{"KDSYNC_NATS_CA=" + p.CA, "KDSYNC_NATS_TOKEN=wrong-" + token}, "authorization"},
	}
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "kdsync.log")
			d := startDaemon(t, append(kdsyncEnv(url, "http://127.0.0.1:1", freeAddr(t)), tc.env...), logPath)
			select {
			case <-d.exited:
			case <-time.After(20 * time.Second):
				t.Fatalf("kdsync still running 20s after NATS refused it:\n%s", d.tail())
			}
			if d.err == nil {
				t.Fatalf("kdsync exited with status 0 after NATS refused it:\n%s", d.tail())
			}
			out := d.tail()
			if !strings.Contains(strings.ToLower(out), tc.want) {
				t.Errorf("kdsync's error does not say %q:\n%s", tc.want, out)
			}
			if strings.Contains(out, token) {
				t.Errorf("kdsync's output shows the token:\n%s", out)
			}
		})
	}
}

// scanEndpoints fetches kdsync's HTTP endpoints, fails the test when any
// shows one of secrets, and checks that profiling is off unless pprof.
func scanEndpoints(t *testing.T, httpAddr string, pprof bool, secrets ...string) {
	t.Helper()
	for _, path := range []string{"/metrics", "/healthz", "/readyz", "/"} {
		code, body, err := httpGet("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if code != http.StatusOK {
			t.Errorf("GET %s: %d", path, code)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("GET %s shows the secret %q", path, s)
			}
		}
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/vars"} {
		code, body, err := httpGet("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		switch {
		case path == "/debug/vars" && code == http.StatusOK:
			t.Errorf("GET %s: expvar is served", path)
		case path != "/debug/vars" && !pprof && code != http.StatusNotFound:
			t.Errorf("GET %s: %d; profiling must be off by default", path, code)
		case path != "/debug/vars" && pprof && code != http.StatusOK:
			t.Errorf("GET %s: %d with KDSYNC_PPROF=true", path, code)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				// /debug/pprof/cmdline shows the command line: secrets
				// must never be passed as flags.
				t.Errorf("GET %s shows the secret %q", path, s)
			}
		}
	}
}

// TestSecretsNeverLogged runs kdsync at debug level with known secrets
// (the KooDrive app secret, the NATS password, then a bearer token), with
// KooDrive failing in every transient way and then refusing the
// credentials: no secret appears in kdsync's log, its HTTP endpoints, the
// outcomes or the dead letters; /debug/pprof is off unless asked for.
func TestSecretsNeverLogged(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	seed := testSeed(t)
	bins.path(t, "kdsync") // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const natsUser, natsPassword = "kdsync", "nats-password-77e0c2a9f1"
	const appSecret = kdapi.Secret("app-secret-0f9a8b7c6d5e4f3a")
	const bearer = kdapi.Secret("bearer-token-1c2d3e4f5a6b")
	secrets := []string{natsPassword, appSecret.Reveal(), bearer.Reveal()}

	ns := startSingle(t, natsembed.Options{User: natsUser, Password: natsPassword})
	nc := connect(t, ns.URL(), nats.UserInfo(natsUser, natsPassword))
	natsEnv := []string{"KDSYNC_NATS_USER=" + natsUser, "KDSYNC_NATS_PASSWORD=" + natsPassword}
	appEnv := func(simURL string) []string {
		return []string{"KDSYNC_API_BASE_URL=" + simURL, "KDSYNC_APP_SECRET=" + appSecret.Reveal(), "KDSYNC_LOG_LEVEL=debug"}
	}
	checkLog := func(log string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("kdsync's log shows the secret %q", s)
			}
		}
	}

	// 1. KooDrive failing transiently (errors, ambiguous writes, slow
	// answers past the client timeout) with app authentication.
	sim, err := harness.StartSim(kdsim.Options{Seed: seed, AppID: harness.AppID, AppSecret: appSecret, Faults: kdsim.Faults{
		ErrorRate: 0.1, ErrorStatuses: []int{429, 500, 503}, RetryAfter: time.Millisecond,
		FailAfterWriteRate: 0.05, SlowRate: 0.02, SlowFor: 3 * time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	log := runSmall(t, "secrets-transient-faults", ns.URL(), nc, sim,
		append(append(natsEnv, appEnv(sim.URL)...), "KDSYNC_API_TIMEOUT=300ms"), seed,
		checker.Ambiguity{FailAfterWrite: true}, "10% 429/500/503, 5% fail-after-write, 2% slow")
	checkLog(log)

	// 2. KooDrive refusing the credentials (401 on every call), app
	// authentication then a bearer token; the HTTP endpoints scanned while
	// kdsync retries, profiling on in the second run only.
	evs, err := workload.Generate(workload.Options{Users: 20, EventsPerUser: 2, Departments: sim.Departments(), Seed: seed + 1, FirstUser: 1008700000000000000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feed(ctx, nc, "IDENTITY", evs, 0); err != nil {
		t.Fatal(err)
	}
	for i, mode := range []struct {
		name string
		sim  kdsim.Options
		env  []string
	}{
		{"app secret refused", kdsim.Options{AppID: harness.AppID, AppSecret: "another-secret"}, nil},
		{"bearer token refused", kdsim.Options{Token: "another-token"}, []string{
			"KDSYNC_APP_ID=", "KDSYNC_APP_SECRET=", "KDSYNC_API_USER_ID=", "KDSYNC_API_TOKEN=" + bearer.Reveal(), "KDSYNC_PPROF=true"}},
	} {
		refusing, err := harness.StartSim(mode.sim)
		if err != nil {
			t.Fatal(err)
		}
		httpAddr := freeAddr(t)
		env := append(kdsyncEnv(ns.URL(), refusing.URL, httpAddr), natsEnv...)
		env = append(env, appEnv(refusing.URL)...)
		env = append(env, mode.env...)
		env = dedupEnv(env)
		logPath := filepath.Join(t.TempDir(), "kdsync.log")
		d := startDaemon(t, env, logPath)
		if err := waitReady(ctx, d, httpAddr); err != nil {
			t.Fatal(err, d.tail())
		}
		for refusing.Stats().Requests < 20 {
			if ctx.Err() != nil {
				t.Fatalf("%s: %d requests", mode.name, refusing.Stats().Requests)
			}
			time.Sleep(20 * time.Millisecond)
		}
		scanEndpoints(t, httpAddr, i == 1, secrets...)
		if took, err := d.stop(t, 30*time.Second); err != nil {
			t.Errorf("%s: kdsync stop after %s: %v", mode.name, took, err)
		}
		refusing.Close()
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		if !refusalLogged(string(b)) {
			t.Errorf("%s: kdsync's log does not show the refusal:\n%s", mode.name, tailString(string(b), 2000))
		}
		checkLog(string(b))
		t.Logf("%s: %d calls refused, nothing secret in the log or on the endpoints", mode.name, refusing.Stats().Requests)
	}

	// Outcomes and dead letters carry errors too.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"KDSYNC_OUTCOMES", "KDSYNC_DLQ"} {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // a gap: removed as a duplicate or by the limits
			}
			if err != nil {
				t.Fatalf("%s message %d: %v", stream, seq, err)
			}
			all := string(m.Data) + fmt.Sprint(m.Header)
			for _, sec := range secrets {
				if strings.Contains(all, sec) {
					t.Errorf("%s message %d shows the secret %q", stream, seq, sec)
				}
			}
		}
	}
}

// dedupEnv keeps the last value of each variable.
func dedupEnv(env []string) []string {
	last := map[string]int{}
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = i
	}
	var out []string
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if last[k] == i {
			out = append(out, kv)
		}
	}
	return out
}

// TestSecretsNotInErrorMessages starts kdsync with configurations that
// are wrong in ways that involve a secret: kdsync refuses or retries, and
// neither its errors nor its log show the secret.
func TestSecretsNotInErrorMessages(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	const secret = "s3cret-6a1f0e9d8c"
	ns := startSingle(t, natsembed.Options{User: "kdsync", Password: secret})
	// A server that takes a token, given in the URL (nats://TOKEN@host).
	nsToken := startSingle(t, natsembed.Options{Token: secret})
	tokenHost := strings.TrimPrefix(nsToken.URL(), "nats://")
	closedPort := freeAddr(t)
	// Events for the runs that reach NATS, so that KooDrive calls fail.
	evs, err := workload.Generate(workload.Options{Users: 5, EventsPerUser: 2, Departments: []int64{1319678187126486144}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := harness.Publish(ctx, connect(t, ns.URL(), nats.UserInfo("kdsync", secret)), "IDENTITY", evs); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		env []string
		// exits: kdsync must stop on its own; otherwise it retries and
		// is stopped once its log shows wantLog.
		exits   bool
		wantLog string
	}{
		"KooDrive URL with a password, malformed": {
			env:   []string{"KDSYNC_API_BASE_URL=http://user:" + secret + "@[::1"},
			exits: true,
		},
		"KooDrive URL with a password": {
			env:   []string{"KDSYNC_API_BASE_URL=https://user:" + secret + "@koodrive.example"},
			exits: true,
		},
		"KooDrive URL with a password and a bad scheme": {
			env:   []string{"KDSYNC_API_BASE_URL=ftp://user:" + secret + "@koodrive.example"},
			exits: true,
		},
		"app secret and token both": {
			env:   []string{"KDSYNC_APP_SECRET=" + secret, "KDSYNC_API_TOKEN=" + secret + "-token"},
			exits: true,
		},
		"app secret without app id": {
			env:   []string{"KDSYNC_APP_ID=", "KDSYNC_APP_SECRET=" + secret},
			exits: true,
		},
		"NATS password wrong": {
			env:   []string{"KDSYNC_NATS_URL=" + ns.URL(), "KDSYNC_NATS_USER=kdsync", "KDSYNC_NATS_PASSWORD=wrong-" + secret},
			exits: true,
		},
		"NATS URL with a password, unreachable": {
			env:     []string{"KDSYNC_NATS_URL=nats://kdsync:" + secret + "@" + closedPort},
			wantLog: "NATS not reachable",
		},
		"NATS URL with a token, unreachable": {
			env:     []string{"KDSYNC_NATS_URL=nats://" + secret + "@" + closedPort},
			wantLog: "NATS not reachable",
		},
		"NATS URL with a token, connected": {
			env:     []string{"KDSYNC_NATS_URL=nats://" + secret + "@" + tokenHost, "KDSYNC_LOG_LEVEL=debug"},
			wantLog: "NATS connected",
		},
		"NATS URL over http with a token": {
			env:   []string{"KDSYNC_NATS_URL=http://" + secret + "@" + tokenHost},
			exits: true,
		},
		"KooDrive URL with a query": {
			env:   []string{"KDSYNC_API_BASE_URL=https://koodrive.example/?token=" + secret},
			exits: true,
		},
		"KooDrive unreachable": {
			env:     []string{"KDSYNC_NATS_URL=" + ns.URL(), "KDSYNC_NATS_USER=kdsync", "KDSYNC_NATS_PASSWORD=" + secret, "KDSYNC_APP_SECRET=" + secret, "KDSYNC_API_BASE_URL=http://" + closedPort, "KDSYNC_LOG_LEVEL=debug"},
			wantLog: "retrying event",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := kdsyncEnv("nats://"+closedPort, "http://"+closedPort, "127.0.0.1:0", tc.env...)
			env = dedupEnv(env)
			logPath := filepath.Join(t.TempDir(), "kdsync.log")
			d := startDaemon(t, env, logPath)
			if tc.exits {
				select {
				case <-d.exited:
				case <-time.After(30 * time.Second):
					t.Fatalf("kdsync still running:\n%s", d.tail())
				}
				if d.err == nil {
					t.Fatalf("kdsync exited with status 0:\n%s", d.tail())
				}
			} else {
				deadline := time.Now().Add(30 * time.Second)
				for !strings.Contains(d.tail(), tc.wantLog) {
					if time.Now().After(deadline) || !d.running() {
						t.Fatalf("kdsync's log lacks %q:\n%s", tc.wantLog, d.tail())
					}
					time.Sleep(50 * time.Millisecond)
				}
				// Its exit status is TestSIGTERMWhileNATSUnreachable's
				// business; here it only has to stop.
				if took, err := d.stop(t, 30*time.Second); d.running() {
					t.Errorf("kdsync did not stop within %s: %v", took, err)
				}
			}
			b, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			out := string(b)
			if strings.Contains(out, secret) {
				t.Errorf("kdsync's output shows the secret:\n%s", out)
			}
			t.Logf("kdsync said:\n%s", tailString(out, 1500))
		})
	}
}

// TestHTTPEndpointCanBeTurnedOff sets KDSYNC_HTTP_ADDR to nothing, which
// the flag's help documents as "empty: off": kdsync then serves no HTTP.
func TestHTTPEndpointCanBeTurnedOff(t *testing.T) {
	testenv.SkipShort(t, "runs kdsync as a process")
	closed := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "kdsync.log")
	d := startDaemon(t, kdsyncEnv("nats://"+closed, "http://"+closed, ""), logPath)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.tail(), "NATS not reachable yet") {
		if time.Now().After(deadline) || !d.running() {
			t.Fatalf("kdsync does not wait for NATS:\n%s", d.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The probe: the process holds no listening socket (kdsync listens
	// before it connects to NATS, so by now it would).
	ln, err := d.listening()
	if err != nil {
		t.Fatalf("reading kdsync's sockets: %v", err)
	}
	d.kill()
	if len(ln) > 0 {
		t.Fatalf("KDSYNC_HTTP_ADDR is empty, yet kdsync listens on %v:\n%s", ln, d.tail())
	}
	if out := d.tail(); strings.Contains(out, "serving metrics and health") || strings.Contains(out, "http: listen") {
		t.Fatalf("KDSYNC_HTTP_ADDR is empty, yet kdsync serves HTTP:\n%s", out)
	}

	// The probe's control: with an address, the same probe finds it.
	httpAddr := freeAddr(t)
	d = startDaemon(t, kdsyncEnv("nats://"+closed, "http://"+closed, httpAddr), filepath.Join(t.TempDir(), "kdsync.log"))
	for {
		code, _, err := httpGet("http://" + httpAddr + "/healthz")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) || !d.running() {
			t.Fatalf("kdsync with KDSYNC_HTTP_ADDR=%s does not serve /healthz (%d, %v):\n%s", httpAddr, code, err, d.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ln, err = d.listening()
	d.kill()
	if err != nil {
		t.Fatalf("reading kdsync's sockets: %v", err)
	}
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(ln) != 1 || !strings.HasSuffix(ln[0], fmt.Sprintf(":%04X", mustAtoi(t, port))) {
		t.Fatalf("the probe found %v; want one socket listening on %s", ln, httpAddr)
	}
}

// mustAtoi parses a decimal number or fails t.
func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// refusalLogged reports whether a kdsync log shows KooDrive refusing the
// credentials: a KooDrive call's error with HTTP 401 (kdapi's
// "kdapi: METHOD PATH: HTTP 401 ..."), not any "401" anywhere, such as in
// a sequence number or a time.
func refusalLogged(log string) bool {
	for line := range strings.SplitSeq(log, "\n") {
		if _, after, ok := strings.Cut(line, "kdapi: "); ok && strings.Contains(after, ": HTTP 401") {
			return true
		}
	}
	return false
}
