package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomize builds the kustomization in dir, writes the objects to out and
// checks that the build kept the kustomization's promises.
func kustomize(dir, out string) error {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return err
	}
	b, err := res.AsYaml()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	raw, err := os.ReadFile(dir + "/kustomization.yaml")
	if err != nil {
		return err
	}
	var kz types.Kustomization
	if err := yaml.UnmarshalStrict(raw, &kz); err != nil {
		return fmt.Errorf("kustomization.yaml: %w", err)
	}
	var problems []error
	var kinds []string
	generated := map[string]bool{} // ConfigMap names the build made
	configRefs := map[string]bool{}
	images := map[string]bool{}
	for _, r := range res.Resources() {
		kinds = append(kinds, r.GetKind())
		if ns := r.GetNamespace(); r.GetKind() != "Namespace" && ns != kz.Namespace {
			problems = append(problems, fmt.Errorf("%s %s: namespace %q, want %q", r.GetKind(), r.GetName(), ns, kz.Namespace))
		}
		if r.GetKind() == "ConfigMap" {
			generated[r.GetName()] = true
		}
		if r.GetKind() != "Deployment" {
			continue
		}
		m, err := r.Map()
		if err != nil {
			return err
		}
		spec, _ := dig(m, "spec", "template", "spec").(map[string]any)
		for _, c := range asList(spec["containers"]) {
			cm, _ := c.(map[string]any)
			if img, ok := cm["image"].(string); ok {
				images[img] = true
			}
			for _, ef := range asList(cm["envFrom"]) {
				if name, ok := dig(ef, "configMapRef", "name").(string); ok {
					configRefs[name] = true
				}
			}
		}
	}
	for _, img := range kz.Images {
		want := img.NewName + ":" + img.NewTag
		if !images[want] {
			problems = append(problems, fmt.Errorf("image %s not set to %s: the Deployment runs %v", img.Name, want, keys(images)))
		}
	}
	for _, g := range kz.ConfigMapGenerator {
		found := false
		for name := range generated {
			if strings.HasPrefix(name, g.Name+"-") && configRefs[name] {
				found = true
			}
		}
		if !found {
			problems = append(problems, fmt.Errorf("generated ConfigMap %s-<hash> (made: %v) not referred to by the Deployment (refers to %v)", g.Name, keys(generated), keys(configRefs)))
		}
	}
	fmt.Printf("kustomize %s: %d objects: %s\n", dir, len(kinds), strings.Join(kinds, " "))
	return errors.Join(problems...)
}

// dig follows keys through nested maps; nil when a key is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
