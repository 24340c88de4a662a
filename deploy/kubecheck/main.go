// Command kubecheck decodes Kubernetes manifests strictly into their Go API
// types (k8s.io/api, and the Prometheus Operator's for ServiceMonitor and
// PrometheusRule), so that a misspelt or misplaced field fails CI instead
// of being dropped by the API server. No cluster is needed.
//
//	go run . FILE...    (deploy/ci.sh: cd deploy/kubecheck && go run . ../kubernetes/*.yaml)
//	go run . -kustomize DIR OUT FILE...
//
// With -kustomize it first builds the kustomization in DIR as
// `kubectl kustomize DIR` would (sigs.k8s.io/kustomize/api, the library
// kubectl embeds: no kubectl needed), writes the result to OUT, checks what
// the kustomization promises of it (every object in its namespace, the
// image set, the generated ConfigMap referred to by its hashed name), and
// checks OUT with the FILEs.
//
// Each file may hold several documents separated by "---". Files that are
// not Kubernetes objects (kustomization.yaml) are skipped. It is a module of
// its own so that kdsync's go.mod does not carry the Kubernetes API.
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// kinds maps apiVersion/kind to a constructor of its Go type.
var kinds = map[string]func() any{
	"v1/Namespace":                  func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                  func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                     func() any { return new(corev1.Secret) },
	"v1/Service":                    func() any { return new(corev1.Service) },
	"apps/v1/Deployment":            func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget": func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monv1.PrometheusRule) },
}

var separator = regexp.MustCompile(`(?m)^---\s*$`)

func main() {
	args := os.Args[1:]
	if len(args) >= 3 && args[0] == "-kustomize" {
		if err := kustomize(args[1], args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "kubecheck: kustomize:", err)
			os.Exit(1)
		}
		args = append(args[3:], args[2])
	}
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck [-kustomize DIR OUT] FILE...")
		os.Exit(2)
	}
	bad := 0
	for _, path := range args {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for i, doc := range separator.Split(string(b), -1) {
			if msg := check([]byte(doc)); msg != "" {
				fmt.Printf("%s (document %d): %s\n", path, i+1, msg)
				if msg[0] != '(' {
					bad++
				}
			}
		}
	}
	if bad > 0 {
		fmt.Printf("kubecheck: %d invalid objects\n", bad)
		os.Exit(1)
	}
}

// check returns "" for a valid object, a note in parentheses for a document
// that is not a Kubernetes object, and the problem otherwise.
func check(doc []byte) string {
	if len(bytes.TrimSpace(stripComments(doc))) == 0 {
		return ""
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return "not YAML: " + err.Error()
	}
	if head.Kind == "Kustomization" {
		return "(a kustomization, skipped)"
	}
	mk, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return fmt.Sprintf("unknown apiVersion/kind %s/%s", head.APIVersion, head.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, mk()); err != nil {
		return head.Kind + ": " + err.Error()
	}
	fmt.Printf("ok: %s %s\n", head.APIVersion, head.Kind)
	return ""
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
