package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// missingMetrics are metrics the dashboard plots that the code does not
// serve yet (issue 5 asks for them). The dashboard test lets their panels
// be empty, and fails as soon as one is documented or served, so that the
// list only shrinks.
var missingMetrics = []string{}

// ---------------------------------------------------------------- helpers

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// macdistBinary builds cmd/macdist once for the package's tests.
func macdistBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go") // go test puts GOROOT/bin first on PATH
		if err != nil {
			buildErr = fmt.Errorf("finding the go command: %w", err)
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "macdist-deploy-test-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "macdist")
		cmd := exec.Command(goTool, "build", "-o", binPath, "./cmd/macdist")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/macdist: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]map[string]bool{}
)

// macdistFlags returns the flag names `macdist SUB -h` lists.
func macdistFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	bin := macdistBinary(t)
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if f, ok := flagsCache[sub]; ok {
		return f
	}
	out, _ := exec.Command(bin, sub, "-h").CombinedOutput() // -h may exit non-zero
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllSubmatch(out, -1) {
		names[string(m[1])] = true
	}
	if len(names) < 5 {
		t.Fatalf("macdist %s -h lists %d flags; output:\n%s", sub, len(names), out)
	}
	flagsCache[sub] = names
	return names
}

// checkFlags reports every --flag in args that `macdist SUB` does not have.
func checkFlags(t *testing.T, where, sub string, args []string) {
	t.Helper()
	known := macdistFlags(t, sub)
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "--" || a == "-" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known[name] {
			t.Errorf("%s: macdist %s has no flag %s", where, sub, a)
		}
	}
}

// splitLaunch splits `launch` arguments at the "--" before the train flags.
func splitLaunch(t *testing.T, where string, args []string) (launch, train []string) {
	t.Helper()
	i := slices.Index(args, "--")
	if i < 0 {
		t.Fatalf("%s: no -- between the launch flags and the train flags in %q", where, args)
	}
	return args[:i], args[i+1:]
}

// flagValue returns the last value given to --name in args (flag
// semantics: the last one wins), or "" when absent.
func flagValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		if a == "--"+name || a == "-"+name {
			if i+1 < len(args) {
				v = args[i+1]
			}
		} else if s, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			v = s
		}
	}
	return v
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML file into generic values.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// decodeYAML decodes the one document of path into v.
func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func hostPort(t *testing.T, where, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q: %v", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %q: port: %v", where, addr, err)
	}
	return h, n
}

// parseNNodes reads --nnodes MIN or MIN:MAX.
func parseNNodes(t *testing.T, where, s string) (int, int) {
	t.Helper()
	lo, hi, ok := strings.Cut(s, ":")
	minN, err1 := strconv.Atoi(lo)
	maxN, err2 := minN, error(nil)
	if ok {
		maxN, err2 = strconv.Atoi(hi)
	}
	if err1 != nil || err2 != nil || minN < 1 || maxN < minN {
		t.Fatalf("%s: --nnodes %q is not MIN or MIN:MAX", where, s)
	}
	return minN, maxN
}

// checkBatch requires the global batch to split over every world size the
// run may have, as launch does.
func checkBatch(t *testing.T, where string, train []string, minN, maxN, nproc int) {
	t.Helper()
	b, err := strconv.Atoi(flagValue(train, "batch"))
	if err != nil {
		t.Errorf("%s: --batch %q: %v", where, flagValue(train, "batch"), err)
		return
	}
	for n := minN; n <= maxN; n++ {
		if b%(n*nproc) != 0 {
			t.Errorf("%s: --batch %d does not split over %d nodes × %d processes", where, b, n, nproc)
		}
	}
}

// ---------------------------------------------------------------- YAML

func TestEveryYAMLFileParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yml" || ext == ".yaml") {
			if len(yamlDocs(t, path)) == 0 {
				t.Errorf("%s: no YAML document", path)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Errorf("found %d YAML files under deploy/; expected the Prometheus, Grafana and Kubernetes ones", n)
	}
}

// ---------------------------------------------------------------- Kubernetes

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sObject struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type container struct {
	Name      string          `yaml:"name"`
	Image     string          `yaml:"image"`
	Command   []string        `yaml:"command"`
	Args      []string        `yaml:"args"`
	Env       []envVar        `yaml:"env"`
	Ports     []containerPort `yaml:"ports"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Subdomain       string `yaml:"subdomain"`
		RestartPolicy   string `yaml:"restartPolicy"`
		SecurityContext struct {
			RunAsUser    int  `yaml:"runAsUser"`
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		Containers []container `yaml:"containers"`
		Volumes    []struct {
			Name                  string `yaml:"name"`
			PersistentVolumeClaim *struct {
				ClaimName string `yaml:"claimName"`
			} `yaml:"persistentVolumeClaim"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type workload struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		ServiceName    string      `yaml:"serviceName"`
		Replicas       int         `yaml:"replicas"`
		CompletionMode string      `yaml:"completionMode"`
		Completions    int         `yaml:"completions"`
		Parallelism    int         `yaml:"parallelism"`
		Template       podTemplate `yaml:"template"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

type service struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name     string `yaml:"name"`
			Port     int    `yaml:"port"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type secret struct {
	k8sObject  `yaml:",inline"`
	StringData map[string]string `yaml:"stringData"`
}

type pvc struct {
	k8sObject `yaml:",inline"`
	Spec      struct {
		AccessModes []string `yaml:"accessModes"`
	} `yaml:"spec"`
}

func k8sFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no k8s/*.yaml: %v", err)
	}
	return files
}

func TestKubernetesObjectsAreComplete(t *testing.T) {
	kinds := map[string]int{}
	for _, f := range k8sFiles(t) {
		for i, d := range yamlDocs(t, f) {
			var o k8sObject
			b, _ := yaml.Marshal(d)
			if err := yaml.Unmarshal(b, &o); err != nil {
				t.Fatalf("%s: document %d: %v", f, i+1, err)
			}
			if o.APIVersion == "" || o.Kind == "" {
				t.Errorf("%s: document %d: missing apiVersion or kind", f, i+1)
			}
			if o.Kind != "Kustomization" && o.Metadata.Name == "" {
				t.Errorf("%s: document %d (%s): missing metadata.name", f, i+1, o.Kind)
			}
			kinds[o.Kind]++
		}
	}
	for _, k := range []string{"Service", "StatefulSet", "Job", "Secret", "PersistentVolumeClaim", "Kustomization"} {
		if kinds[k] == 0 {
			t.Errorf("k8s/ has no %s", k)
		}
	}

	// kustomization.yaml applies the run, but never the placeholder key,
	// and not the Job beside the StatefulSet.
	var kz struct {
		Resources []string `yaml:"resources"`
	}
	decodeYAML(t, "k8s/kustomization.yaml", &kz)
	for _, r := range kz.Resources {
		if _, err := os.Stat(filepath.Join("k8s", r)); err != nil {
			t.Errorf("kustomization.yaml: resource %s: %v", r, err)
		}
	}
	for _, want := range []string{"service.yaml", "pvc.yaml", "statefulset.yaml"} {
		if !slices.Contains(kz.Resources, want) {
			t.Errorf("kustomization.yaml does not list %s", want)
		}
	}
	for _, not := range []string{"secret.example.yaml", "job.yaml"} {
		if slices.Contains(kz.Resources, not) {
			t.Errorf("kustomization.yaml lists %s", not)
		}
	}
}

// TestKubernetesWorkloads checks what the StatefulSet and the Job must
// agree on with each other, the Service, the Secret, the volume and macdist.
func TestKubernetesWorkloads(t *testing.T) {
	var svc service
	decodeYAML(t, "k8s/service.yaml", &svc)
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("service.yaml: clusterIP %q, want None (headless: a DNS name per pod)", svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Error("service.yaml: publishNotReadyAddresses must be true: pods rendezvous before they are ready")
	}
	svcPorts := map[string]int{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name+"/"+p.Protocol] = p.Port
	}
	var sec secret
	decodeYAML(t, "k8s/secret.example.yaml", &sec)
	var claim pvc
	decodeYAML(t, "k8s/pvc.yaml", &claim)
	if !slices.Contains(claim.Spec.AccessModes, "ReadWriteMany") {
		t.Errorf("pvc.yaml: access modes %v: every pod reads the run directory, so ReadWriteMany", claim.Spec.AccessModes)
	}
	for k, v := range sec.StringData {
		if !strings.Contains(v, "REPLACE") {
			t.Errorf("secret.example.yaml: %s=%q looks like a real key: keep a placeholder", k, v)
		}
	}

	for _, f := range []string{"k8s/statefulset.yaml", "k8s/job.yaml"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var w workload
			decodeYAML(t, f, &w)
			pod := w.Spec.Template
			replicas := w.Spec.Replicas
			switch w.Kind {
			case "StatefulSet":
				if w.Spec.ServiceName != svc.Metadata.Name {
					t.Errorf("serviceName %q, want the headless Service %q", w.Spec.ServiceName, svc.Metadata.Name)
				}
			case "Job":
				if w.Spec.CompletionMode != "Indexed" {
					t.Errorf("completionMode %q, want Indexed (stable host names)", w.Spec.CompletionMode)
				}
				if pod.Spec.Subdomain != svc.Metadata.Name {
					t.Errorf("subdomain %q, want the headless Service %q", pod.Spec.Subdomain, svc.Metadata.Name)
				}
				if w.Spec.Completions != w.Spec.Parallelism {
					t.Errorf("completions %d ≠ parallelism %d: every index must run at once", w.Spec.Completions, w.Spec.Parallelism)
				}
				replicas = w.Spec.Parallelism
			default:
				t.Fatalf("kind %s, want StatefulSet or Job", w.Kind)
			}
			for k, v := range svc.Spec.Selector {
				if pod.Metadata.Labels[k] != v {
					t.Errorf("pod label %s=%q, the Service selects %q", k, pod.Metadata.Labels[k], v)
				}
			}
			if len(pod.Spec.Containers) != 1 {
				t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
			}
			c := pod.Spec.Containers[0]
			cmdline := append(append([]string{}, c.Command...), c.Args...)
			if !strings.Contains(strings.Join(cmdline, " "), "macdist launch") {
				t.Fatalf("command %q does not run macdist launch", cmdline)
			}
			args := cmdline[slices.Index(cmdline, "launch")+1:]
			launch, train := splitLaunch(t, f, args)
			checkFlags(t, f, "launch", launch)
			checkFlags(t, f, "train", train)

			// The key comes from the Secret, never from the manifest.
			env := map[string]envVar{}
			for _, e := range c.Env {
				env[e.Name] = e
			}
			key, ok := env["MACDIST_CLUSTER_KEY"]
			switch {
			case !ok:
				t.Error("no MACDIST_CLUSTER_KEY in the environment")
			case key.Value != "" || key.ValueFrom == nil || key.ValueFrom.SecretKeyRef == nil:
				t.Error("MACDIST_CLUSTER_KEY must come from a secretKeyRef")
			default:
				ref := key.ValueFrom.SecretKeyRef
				if ref.Name != sec.Metadata.Name {
					t.Errorf("MACDIST_CLUSTER_KEY from Secret %q; secret.example.yaml makes %q", ref.Name, sec.Metadata.Name)
				}
				if _, ok := sec.StringData[ref.Key]; !ok {
					t.Errorf("MACDIST_CLUSTER_KEY from key %q, which secret.example.yaml does not have", ref.Key)
				}
			}
			if flagValue(launch, "cluster-key") != "" {
				t.Error("--cluster-key on the command line: the key belongs in the Secret")
			}
			// Every $(VAR) the arguments use is defined.
			for _, a := range args {
				for _, m := range regexp.MustCompile(`\$\((\w+)\)`).FindAllStringSubmatch(a, -1) {
					if _, ok := env[m[1]]; !ok {
						t.Errorf("argument %q uses $(%s), which the container's env does not define", a, m[1])
					}
				}
			}

			// One process per GPU.
			nproc, err := strconv.Atoi(flagValue(launch, "nproc-per-node"))
			if err != nil {
				t.Fatalf("--nproc-per-node: %v", err)
			}
			for what, m := range map[string]map[string]string{"limits": c.Resources.Limits, "requests": c.Resources.Requests} {
				if g, ok := m["nvidia.com/gpu"]; ok && g != strconv.Itoa(nproc) || what == "limits" && !ok {
					t.Errorf("resources.%s nvidia.com/gpu %q, --nproc-per-node %d: one process per GPU", what, g, nproc)
				}
			}
			if d := flagValue(train, "device"); !strings.HasPrefix(d, "cuda") {
				t.Errorf("--device %q on GPU pods", d)
			}

			// Gossip, control and the rendezvous address.
			_, bindPort := hostPort(t, "--bind", flagValue(launch, "bind"))
			if svcPorts["gossip/TCP"] != bindPort || svcPorts["gossip-udp/UDP"] != bindPort || svcPorts["control/TCP"] != bindPort+1 {
				t.Errorf("Service ports %v; --bind port %d needs gossip TCP and UDP on it and control on %d", svcPorts, bindPort, bindPort+1)
			}
			joinHost, joinPort := hostPort(t, "--join", flagValue(launch, "join"))
			wantJoin := w.Metadata.Name + "-0." + svc.Metadata.Name + "."
			if !strings.HasPrefix(joinHost, wantJoin) || joinPort != bindPort {
				t.Errorf("--join %s:%d, want pod 0's name %s…:%d", joinHost, joinPort, wantJoin, bindPort)
			}
			minN, maxN := parseNNodes(t, f, flagValue(launch, "nnodes"))
			if replicas < minN || replicas > maxN {
				t.Errorf("%d pods, outside --nnodes %d:%d", replicas, minN, maxN)
			}
			checkBatch(t, f, train, minN, maxN, nproc)

			// Metrics: the agent on metrics-agent (and the annotation), the
			// workers on metrics-lrN = their port + local rank.
			ports := map[string]int{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			_, agentPort := hostPort(t, "launch --metrics-addr", flagValue(launch, "metrics-addr"))
			if ports["metrics-agent"] != agentPort {
				t.Errorf("container port metrics-agent %d, launch --metrics-addr port %d", ports["metrics-agent"], agentPort)
			}
			if a := pod.Metadata.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(agentPort) {
				t.Errorf("annotations %v: want prometheus.io/scrape true and prometheus.io/port %d", a, agentPort)
			}
			_, workerPort := hostPort(t, "train --metrics-addr", flagValue(train, "metrics-addr"))
			nlr := 0
			for name, p := range ports {
				if s, ok := strings.CutPrefix(name, "metrics-lr"); ok {
					lr, err := strconv.Atoi(s)
					if err != nil || p != workerPort+lr {
						t.Errorf("container port %s=%d, want train --metrics-addr port %d + local rank", name, p, workerPort)
					}
					nlr++
				}
			}
			if nlr != nproc {
				t.Errorf("%d metrics-lrN container ports for %d processes", nlr, nproc)
			}

			// The run directory is on the shared ReadWriteMany volume.
			runDir := flagValue(train, "run-dir")
			shared := ""
			for _, v := range pod.Spec.Volumes {
				if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim.Metadata.Name {
					shared = v.Name
				}
			}
			onShared := false
			for _, m := range c.VolumeMounts {
				if m.Name == shared && strings.HasPrefix(runDir, strings.TrimSuffix(m.MountPath, "/")+"/") {
					onShared = true
				}
			}
			if !onShared {
				t.Errorf("--run-dir %q is not on the shared volume (claim %s)", runDir, claim.Metadata.Name)
			}

			// The image's user (deploy/docker/Dockerfile) is the pod's.
			if uid := dockerfileUID(t); pod.Spec.SecurityContext.RunAsUser != uid || !pod.Spec.SecurityContext.RunAsNonRoot {
				t.Errorf("runAsUser %d (nonRoot %v); the image's user is uid %d", pod.Spec.SecurityContext.RunAsUser, pod.Spec.SecurityContext.RunAsNonRoot, uid)
			}
		})
	}
}

// ---------------------------------------------------------------- Prometheus

type relabel struct {
	SourceLabels []string `yaml:"source_labels"`
	Separator    *string  `yaml:"separator"`
	Regex        *string  `yaml:"regex"`
	TargetLabel  string   `yaml:"target_label"`
	Replacement  *string  `yaml:"replacement"`
	Action       string   `yaml:"action"`
}

type scrapeConfig struct {
	JobName       string `yaml:"job_name"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
	KubernetesSDConfigs []struct {
		Role string `yaml:"role"`
	} `yaml:"kubernetes_sd_configs"`
	RelabelConfigs []relabel `yaml:"relabel_configs"`
}

type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

var dashboardJobs = []string{"macdist-agent", "macdist-worker"}

func TestPrometheusConfigs(t *testing.T) {
	for _, f := range []string{"prometheus/prometheus.yml", "prometheus/kubernetes.yml"} {
		var c promConfig
		decodeYAML(t, f, &c)
		if c.Global.ScrapeInterval != "5s" {
			t.Errorf("%s: scrape_interval %q, want 5s", f, c.Global.ScrapeInterval)
		}
		var jobs []string
		for _, s := range c.ScrapeConfigs {
			jobs = append(jobs, s.JobName)
		}
		if !slices.Equal(jobs, dashboardJobs) {
			t.Errorf("%s: jobs %v, the dashboard expects %v", f, jobs, dashboardJobs)
		}
		for _, r := range c.RuleFiles {
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), r)); err != nil {
				t.Errorf("%s: rule file: %v", f, err)
			}
		}
	}
}

// TestPrometheusKubernetesDiscovery runs kubernetes.yml's relabelling over
// the targets pod discovery makes of a StatefulSet pod (one per declared
// container port), as Prometheus would: the agent job must keep the
// agent's port alone, the worker job one port per process.
func TestPrometheusKubernetesDiscovery(t *testing.T) {
	var c promConfig
	decodeYAML(t, "prometheus/kubernetes.yml", &c)
	var w workload
	decodeYAML(t, "k8s/statefulset.yaml", &w)
	pod := w.Spec.Template
	ctr := pod.Spec.Containers[0]
	launch, _ := splitLaunch(t, "statefulset.yaml", ctr.Args)
	nproc, _ := strconv.Atoi(flagValue(launch, "nproc-per-node"))

	sanitize := regexp.MustCompile(`[^a-zA-Z0-9_]`)
	base := map[string]string{
		"__meta_kubernetes_namespace":           "training",
		"__meta_kubernetes_pod_name":            w.Metadata.Name + "-0",
		"__meta_kubernetes_pod_phase":           "Running",
		"__meta_kubernetes_pod_ip":              "10.1.2.3",
		"__meta_kubernetes_pod_ready":           "false",
		"__metrics_path__":                      "/metrics",
		"__scheme__":                            "http",
		"__meta_kubernetes_pod_uid":             "0",
		"__meta_kubernetes_pod_controller_kind": w.Kind,
	}
	for k, v := range pod.Metadata.Labels {
		base["__meta_kubernetes_pod_label_"+sanitize.ReplaceAllString(k, "_")] = v
	}
	for k, v := range pod.Metadata.Annotations {
		base["__meta_kubernetes_pod_annotation_"+sanitize.ReplaceAllString(k, "_")] = v
	}
	for _, sc := range c.ScrapeConfigs {
		if len(sc.KubernetesSDConfigs) != 1 || sc.KubernetesSDConfigs[0].Role != "pod" {
			t.Fatalf("job %s: want one kubernetes_sd_configs with role pod", sc.JobName)
		}
		var kept []map[string]string
		for _, p := range ctr.Ports {
			lbl := map[string]string{}
			for k, v := range base {
				lbl[k] = v
			}
			lbl["__address__"] = fmt.Sprintf("10.1.2.3:%d", p.ContainerPort)
			lbl["__meta_kubernetes_pod_container_name"] = ctr.Name
			lbl["__meta_kubernetes_pod_container_port_name"] = p.Name
			lbl["__meta_kubernetes_pod_container_port_number"] = strconv.Itoa(p.ContainerPort)
			proto := p.Protocol
			if proto == "" {
				proto = "TCP"
			}
			lbl["__meta_kubernetes_pod_container_port_protocol"] = proto
			if applyRelabel(t, sc.JobName, sc.RelabelConfigs, lbl) {
				kept = append(kept, lbl)
			}
		}
		var names []string
		for _, l := range kept {
			names = append(names, l["__meta_kubernetes_pod_container_port_name"])
			if l["pod"] != w.Metadata.Name+"-0" || l["namespace"] != "training" {
				t.Errorf("job %s: target %s lacks the pod and namespace labels: %v", sc.JobName, l["__address__"], l)
			}
		}
		switch sc.JobName {
		case "macdist-agent":
			if !slices.Equal(names, []string{"metrics-agent"}) {
				t.Errorf("job macdist-agent keeps ports %v, want [metrics-agent]", names)
			}
		case "macdist-worker":
			if len(names) != nproc {
				t.Errorf("job macdist-worker keeps ports %v, want the %d metrics-lrN ports", names, nproc)
			}
			for _, l := range kept {
				want := strings.TrimPrefix(l["__meta_kubernetes_pod_container_port_name"], "metrics-lr")
				if l["local_rank"] != want {
					t.Errorf("job macdist-worker: port %s gets local_rank %q", l["__meta_kubernetes_pod_container_port_name"], l["local_rank"])
				}
			}
		}
	}
}

// applyRelabel applies keep, drop and replace rules as Prometheus does
// (anchored RE2 regexes over the source labels joined by ";"); it reports
// whether the target survives.
func applyRelabel(t *testing.T, job string, rules []relabel, lbl map[string]string) bool {
	t.Helper()
	for i, r := range rules {
		sep := ";"
		if r.Separator != nil {
			sep = *r.Separator
		}
		var vals []string
		for _, s := range r.SourceLabels {
			vals = append(vals, lbl[s])
		}
		val := strings.Join(vals, sep)
		expr := "(.*)"
		if r.Regex != nil {
			expr = *r.Regex
		}
		re, err := regexp.Compile("^(?:" + expr + ")$")
		if err != nil {
			t.Fatalf("job %s: relabel rule %d: regex: %v", job, i+1, err)
		}
		action := r.Action
		if action == "" {
			action = "replace"
		}
		switch action {
		case "keep":
			if !re.MatchString(val) {
				return false
			}
		case "drop":
			if re.MatchString(val) {
				return false
			}
		case "replace":
			m := re.FindStringSubmatchIndex(val)
			if m == nil {
				continue
			}
			repl := "$1"
			if r.Replacement != nil {
				repl = *r.Replacement
			}
			if r.TargetLabel == "" {
				t.Fatalf("job %s: relabel rule %d: replace without target_label", job, i+1)
			}
			lbl[r.TargetLabel] = string(re.ExpandString(nil, repl, val, m))
		default:
			t.Fatalf("job %s: relabel rule %d: action %q is not simulated here", job, i+1, action)
		}
	}
	return true
}

// ---------------------------------------------------------------- Grafana

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name     string          `json:"name"`
			Type     string          `json:"type"`
			Query    json.RawMessage `json:"query"`
			AllValue string          `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "grafana/macdist.json")))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("grafana/macdist.json: %v", err)
	}
	return d
}

// dashboardQuery is one target's expression, by panel.
type dashboardQuery struct {
	Panel, RefID, Expr string
}

func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	var qs []dashboardQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, dashboardQuery{p.Title, tg.RefID, tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(loadDashboard(t).Panels)
	return qs
}

// grafanaBuiltins are the interval variables Grafana substitutes, and the
// values the live test gives them.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "15s",
	"__interval":      "5s",
	"__range":         "1m",
}

var varRef = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)

// substitute replaces Grafana variables as Grafana would with every rank
// selected.
func substitute(expr string, vars map[string]string) (string, error) {
	var bad []string
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		if v, ok := vars[name]; ok {
			return v
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("undefined variables %v", bad)
	}
	return out, nil
}

// dashboardVars are the dashboard's query variables with "All" selected.
func dashboardVars(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			vars[v.Name] = v.AllValue
		}
	}
	return vars
}

var metricName = regexp.MustCompile(`\bmacdist_\w+`)

// histogramBase strips the series suffixes of a histogram.
func histogramBase(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok {
			return b
		}
	}
	return name
}

// documentedMetrics are the metrics docs/metrics.md and cluster/doc.go
// name: what the code says it serves.
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	doc := map[string]bool{}
	for _, f := range []string{"../docs/metrics.md", "../cluster/doc.go"} {
		for _, m := range metricName.FindAll(readFile(t, f), -1) {
			doc[string(m)] = true
		}
	}
	return doc
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want ≥ 36", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	dsVar := ""
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			dsVar = v.Name
		}
	}
	if dsVar == "" {
		t.Fatal("no datasource variable of type prometheus")
	}
	vars := dashboardVars(t, d)

	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d twice", p.ID)
			}
			ids[p.ID] = true
			if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s: empty expr", p.Title, tg.RefID)
				}
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				for _, ds := range []*datasourceRef{p.Datasource, tg.Datasource} {
					if ds == nil || ds.Type != "prometheus" || ds.UID != "${"+dsVar+"}" {
						t.Errorf("panel %q target %s: datasource %+v, want the ${%s} variable", p.Title, tg.RefID, ds, dsVar)
					}
				}
				if _, err := substitute(tg.Expr, vars); err != nil {
					t.Errorf("panel %q target %s: %v", p.Title, tg.RefID, err)
				}
			}
		}
	}
	walk(d.Panels)

	// What the dashboard must show, and that it shows only metrics the
	// code documents, or those it is known to lack.
	used := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		for _, m := range metricName.FindAllString(q.Expr, -1) {
			used[histogramBase(m)] = true
		}
	}
	for _, want := range []string{
		"macdist_train_loss", "macdist_test_loss", "macdist_train_accuracy", "macdist_test_accuracy",
		"macdist_samples_total", "macdist_step_seconds", "macdist_allreduce_seconds_total",
		"macdist_world_size", "macdist_generation", "macdist_restarts_total",
		"macdist_optimizer_step_seconds", "macdist_data_wait_seconds", "macdist_nan_skipped_steps_total",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	doc := documentedMetrics(t)
	for m := range used {
		if !doc[m] && !slices.Contains(missingMetrics, m) {
			t.Errorf("the dashboard uses %s, which neither docs/metrics.md nor cluster/doc.go documents", m)
		}
	}
	for _, m := range missingMetrics {
		if doc[m] {
			t.Errorf("%s is documented now: remove it from missingMetrics so that the live test requires its panels", m)
		}
	}
}

// ---------------------------------------------------------------- systemd

type unitFile map[string]map[string][]string // section → key → values

// parseUnit reads a systemd unit: sections, KEY=VALUE, comments, and lines
// continued with a backslash.
func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	u := unitFile{}
	sec := ""
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	var cont strings.Builder
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cont.WriteString(s + " ")
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: bad section header %q", path, n, line)
			}
			sec = line[1 : len(line)-1]
			u[sec] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || sec == "" {
			t.Fatalf("%s:%d: %q is not KEY=VALUE inside a section", path, n, line)
		}
		u[sec][strings.TrimSpace(k)] = append(u[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	if cont.Len() > 0 {
		t.Fatalf("%s: ends inside a continued line", path)
	}
	return u
}

// parseEnvFile reads KEY=VALUE lines as systemd's EnvironmentFile does
// (without quotes, which these files do not use).
func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for i, line := range strings.Split(string(readFile(t, path)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: %q is not KEY=VALUE", path, i+1, line)
		}
		env[k] = v
	}
	return env
}

// expandExec expands ExecStart's variables as systemd does: ${X} is one
// word, a lone $X splits into words.
func expandExec(t *testing.T, cmd string, env map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range strings.Fields(cmd) {
		if s, ok := strings.CutPrefix(w, "$"); ok && !strings.HasPrefix(s, "{") {
			v, ok := env[s]
			if !ok {
				t.Errorf("ExecStart uses $%s, which macdist.env.example does not set", s)
			}
			out = append(out, strings.Fields(v)...)
			continue
		}
		w = regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(w, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := env[name]
			if !ok {
				t.Errorf("ExecStart uses %s, which macdist.env.example does not set", m)
			}
			return v
		})
		out = append(out, w)
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	const path = "systemd/macdist-agent.service"
	u := parseUnit(t, path)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Fatalf("%s: no [%s] section", path, s)
		}
	}
	svc := u["Service"]
	one := func(k string) string {
		if len(svc[k]) != 1 {
			t.Errorf("[Service] %s set %d times, want once", k, len(svc[k]))
			return ""
		}
		return svc[k][0]
	}
	for k, want := range map[string]string{
		"Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
	} {
		if got := one(k); got != want {
			t.Errorf("[Service] %s=%q, want %q", k, got, want)
		}
	}
	envFile := one("EnvironmentFile")
	if envFile == "" || !filepath.IsAbs(strings.TrimPrefix(envFile, "-")) {
		t.Errorf("[Service] EnvironmentFile=%q: the key comes from an absolute path", envFile)
	}
	rw := strings.Fields(one("ReadWritePaths"))
	if len(rw) == 0 {
		t.Error("[Service] ReadWritePaths is empty: the run directory must be writable")
	}

	env := parseEnvFile(t, "systemd/macdist.env.example")
	if k := env["MACDIST_CLUSTER_KEY"]; !strings.Contains(k, "REPLACE") {
		t.Errorf("macdist.env.example: MACDIST_CLUSTER_KEY=%q: keep a placeholder", k)
	}
	words := expandExec(t, one("ExecStart"), env)
	if len(words) < 2 || !filepath.IsAbs(words[0]) || filepath.Base(words[0]) != "macdist" || words[1] != "launch" {
		t.Fatalf("ExecStart %q does not run macdist launch", words)
	}
	launch, train := splitLaunch(t, path, words[2:])
	checkFlags(t, path, "launch", launch)
	checkFlags(t, path, "train", train)
	if flagValue(launch, "cluster-key") != "" {
		t.Error("--cluster-key on the command line: ps shows it; it belongs in the EnvironmentFile")
	}
	minN, maxN := parseNNodes(t, path, flagValue(launch, "nnodes"))
	nproc, err := strconv.Atoi(flagValue(launch, "nproc-per-node"))
	if err != nil {
		t.Fatalf("--nproc-per-node: %v", err)
	}
	checkBatch(t, path, train, minN, maxN, nproc)
	runDir := flagValue(train, "run-dir")
	writable := false
	for _, p := range rw {
		p = strings.TrimLeft(p, "-+")
		if runDir == p || strings.HasPrefix(runDir, strings.TrimSuffix(p, "/")+"/") {
			writable = true
		}
	}
	if !writable {
		t.Errorf("--run-dir %q is not under ReadWritePaths %v: ProtectSystem=strict makes it read-only", runDir, rw)
	}

	// systemd's own check, where there is one: unknown or misspelt
	// directives are only warnings there, so the output must be clean.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found: the unit is checked by the parser above only")
		return
	}
	dir := t.TempDir()
	unit := strings.ReplaceAll(string(readFile(t, path)), words[0], macdistBinary(t))
	f := filepath.Join(dir, "macdist-agent.service")
	if err := os.WriteFile(f, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", f).CombinedOutput()
	// verify also checks the units the system would pull in; only lines
	// about this unit count.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "macdist-agent.service") {
			ours = append(ours, l)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}

// ---------------------------------------------------------------- Slurm

func TestSbatchSyntax(t *testing.T) {
	out, err := exec.Command("bash", "-n", "slurm/macdist.sbatch").CombinedOutput()
	if err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	// #SBATCH lines count only before the first command.
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "slurm/macdist.sbatch")))
	seenCommand := false
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#SBATCH"):
			if seenCommand {
				t.Errorf("line %d: #SBATCH after the first command is ignored by sbatch", n)
			}
		case l != "" && !strings.HasPrefix(l, "#"):
			seenCommand = true
		}
	}
}

// TestSbatchCommand runs the script in dry-run mode in a fake allocation
// (a stub scontrol) and checks the srun command it would run.
func TestSbatchCommand(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	stubs := t.TempDir()
	stub := "#!/bin/sh\n[ \"$1 $2\" = \"show hostnames\" ] || exit 1\necho gpu07\necho gpu08\necho gpu09\n"
	if err := os.WriteFile(filepath.Join(stubs, "scontrol"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(bash, append([]string{"slurm/macdist.sbatch"}, args...)...)
		cmd.Env = append([]string{
			"PATH=" + stubs + string(os.PathListSeparator) + os.Getenv("PATH"),
			"HOME=" + t.TempDir(), "MACDIST_DRY_RUN=1",
			"SLURM_JOB_NODELIST=gpu[07-09]", "SLURM_JOB_NUM_NODES=3", "SLURM_JOB_ID=42",
		}, env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			return stderr.String(), err
		}
		return stdout.String(), nil
	}
	trainArgs := []string{"--model", "lenet5", "--batch", "96", "--run-dir", "/shared/runs/x"}
	for _, tc := range []struct {
		name      string
		env       []string
		nproc     string
		nnodes    string
		metricsTo string
	}{
		{"gpus from slurm", []string{"SLURM_GPUS_ON_NODE=4"}, "4", "3:3", "0.0.0.0:9464"},
		{"no gpus: default", nil, "1", "3:3", "0.0.0.0:9464"},
		{"no gpus: MACDIST_NPROC", []string{"MACDIST_NPROC=2", "MACDIST_MIN_NODES=2"}, "2", "2:3", "0.0.0.0:9464"},
		{"user flag wins", []string{"SLURM_GPUS_ON_NODE=2", "MACDIST_PORT=31000"}, "2", "3:3", "0.0.0.0:9999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := trainArgs
			if tc.metricsTo == "0.0.0.0:9999" {
				args = append(slices.Clone(trainArgs), "--metrics-addr", "0.0.0.0:9999")
			}
			out, err := run(tc.env, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			words := strings.Fields(out)
			i := slices.Index(words, "launch")
			if len(words) == 0 || words[0] != "srun" || i < 1 || filepath.Base(words[i-1]) != "macdist" {
				t.Fatalf("not an srun of macdist launch: %q", out)
			}
			if v := flagValue(words[:i], "ntasks-per-node"); v != "1" {
				t.Errorf("srun --ntasks-per-node=%q, want 1: one launch per node", v)
			}
			launch, train := splitLaunch(t, "sbatch", words[i+1:])
			checkFlags(t, "sbatch", "launch", launch)
			checkFlags(t, "sbatch", "train", train)
			port := "29400"
			if slices.Contains(tc.env, "MACDIST_PORT=31000") {
				port = "31000"
			}
			for flag, want := range map[string]string{
				"join": "gpu07:" + port, "bind": "0.0.0.0:" + port,
				"nproc-per-node": tc.nproc, "nnodes": tc.nnodes,
			} {
				if got := flagValue(launch, flag); got != want {
					t.Errorf("--%s %q, want %q", flag, got, want)
				}
			}
			if got := flagValue(train, "metrics-addr"); got != tc.metricsTo {
				t.Errorf("train --metrics-addr %q, want %q", got, tc.metricsTo)
			}
			if !slices.Contains(train, "--resume") || flagValue(train, "run-dir") != "/shared/runs/x" {
				t.Errorf("train flags %q: want --resume and the given --run-dir", train)
			}
			if strings.Contains(out, "cluster-key") {
				t.Errorf("the key is on the command line: %q", out)
			}
		})
	}
	if out, err := run(nil); err == nil {
		t.Errorf("no train flags: want an error, got %q", out)
	}
	if _, err := run([]string{"SLURM_JOB_NODELIST="}, trainArgs...); err == nil {
		t.Error("outside an allocation: want an error")
	}
}

// ---------------------------------------------------------------- Docker

type dockerInstr struct {
	Line int
	Cmd  string // upper case
	Args string
}

// parseDockerfile splits a Dockerfile into instructions, joining lines
// continued with a backslash and dropping comments and empty lines (also
// inside a continued instruction, as Docker does).
func parseDockerfile(text string) []dockerInstr {
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	flush := func() {
		if cur.Len() == 0 {
			return
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, dockerInstr{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(strings.TrimSpace(s) + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return out
}

type dockerStage struct {
	Name, Image string
	Instrs      []dockerInstr
}

var dockerInstructions = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
	"HEALTHCHECK", "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// dockerStages checks the stage structure and returns the stages, the
// ARGs declared before the first FROM, and what is wrong: FROM must be
// [--platform=P] IMAGE [AS NAME] with any ${ARG} declared, only ARG may
// precede it, and COPY --from must name an earlier stage.
func dockerStages(instrs []dockerInstr) (stages []dockerStage, args map[string]string, problems []string) {
	args = map[string]string{}
	bad := func(in dockerInstr, format string, a ...any) {
		problems = append(problems, fmt.Sprintf("line %d: ", in.Line)+fmt.Sprintf(format, a...))
	}
	defined := map[string]bool{} // every stage name so far
	usable := map[string]bool{}  // those of the earlier stages
	for _, in := range instrs {
		if !slices.Contains(dockerInstructions, in.Cmd) {
			bad(in, "unknown instruction %s", in.Cmd)
			continue
		}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			if len(f) > 0 && strings.HasPrefix(f[0], "--platform=") {
				f = f[1:]
			}
			if len(stages) > 0 {
				usable[stages[len(stages)-1].Name] = true
			}
			st := dockerStage{}
			switch {
			case len(f) == 1:
				st.Image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.Image, st.Name = f[0], strings.ToLower(f[2])
				if defined[st.Name] {
					bad(in, "stage %s defined twice", st.Name)
				}
				defined[st.Name] = true
			default:
				bad(in, "FROM %s: want IMAGE [AS NAME]", in.Args)
			}
			st.Image = os.Expand(st.Image, func(k string) string {
				v, ok := args[k]
				if !ok {
					bad(in, "FROM uses ${%s}, which no ARG before the first FROM declares", k)
				}
				return v
			})
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				bad(in, "%s before the first FROM", in.Cmd)
				continue
			}
			k, v, _ := strings.Cut(in.Args, "=")
			args[k] = v
			continue
		}
		cur := &stages[len(stages)-1]
		cur.Instrs = append(cur.Instrs, in)
		if in.Cmd == "COPY" || in.Cmd == "ADD" {
			for _, f := range strings.Fields(in.Args) {
				from, ok := strings.CutPrefix(f, "--from=")
				if !ok {
					continue
				}
				if n, err := strconv.Atoi(from); err == nil {
					if n < 0 || n >= len(stages)-1 {
						bad(in, "COPY --from=%d: no earlier stage %d", n, n)
					}
				} else if from == "" || !usable[strings.ToLower(from)] {
					bad(in, "COPY --from=%s names no earlier stage", from)
				}
			}
		}
	}
	return stages, args, problems
}

func loadDockerfile(t *testing.T) ([]dockerStage, map[string]string) {
	t.Helper()
	stages, args, problems := dockerStages(parseDockerfile(string(readFile(t, "docker/Dockerfile"))))
	for _, p := range problems {
		t.Errorf("Dockerfile: %s", p)
	}
	return stages, args
}

func dockerfileUID(t *testing.T) int {
	t.Helper()
	stages, _ := loadDockerfile(t)
	m := regexp.MustCompile(`useradd .*--uid (\d+)`)
	for _, in := range stages[len(stages)-1].Instrs {
		if s := m.FindStringSubmatch(in.Args); in.Cmd == "RUN" && s != nil {
			uid, _ := strconv.Atoi(s[1])
			return uid
		}
	}
	t.Fatal("Dockerfile: the runtime stage makes no user with useradd --uid")
	return 0
}

func TestDockerfile(t *testing.T) {
	stages, args := loadDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a runtime", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The builder's Go is go.mod's.
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(readFile(t, "../go.mod")))
	if goVer == nil {
		t.Fatal("go.mod: no go directive")
	}
	if want := "golang:" + goVer[1] + "-bookworm"; build.Image != want {
		t.Errorf("builder image %s, want %s (go.mod says go %s)", build.Image, want, goVer[1])
	}
	built := ""
	for _, in := range build.Instrs {
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			f := strings.Fields(in.Args)
			if i := slices.Index(f, "-o"); i >= 0 && i+1 < len(f) && slices.Contains(f, "./cmd/macdist") {
				built = f[i+1]
			}
		}
		if in.Cmd == "COPY" && !strings.Contains(in.Args, "--from") {
			f := strings.Fields(in.Args)
			for _, src := range f[:len(f)-1] {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("line %d: COPY %s: not in the build context (the repository root): %v", in.Line, src, err)
				}
			}
		}
	}
	if built == "" {
		t.Fatal("the builder does not go build -o … ./cmd/macdist")
	}

	// The runtime: Debian slim by default, OpenBLAS, the binary from the
	// builder, a user that is not root, macdist as the entry point.
	if args["RUNTIME_IMAGE"] != "debian:bookworm-slim" || final.Image != "debian:bookworm-slim" {
		t.Errorf("runtime image %s (ARG RUNTIME_IMAGE=%s), want debian:bookworm-slim by default", final.Image, args["RUNTIME_IMAGE"])
	}
	var openblas, copied, nonRoot bool
	entry := ""
	for _, in := range final.Instrs {
		switch in.Cmd {
		case "RUN":
			openblas = openblas || strings.Contains(in.Args, "apt-get install") && strings.Contains(in.Args, "libopenblas0")
		case "COPY":
			f := strings.Fields(in.Args)
			if slices.Contains(f, "--from="+build.Name) && slices.Contains(f, built) && f[len(f)-1] == "/usr/local/bin/macdist" {
				copied = true
			}
		case "USER":
			u, _, _ := strings.Cut(in.Args, ":")
			nonRoot = u != "root" && u != "0"
		case "ENTRYPOINT":
			var e []string
			if err := json.Unmarshal([]byte(in.Args), &e); err != nil {
				t.Errorf("line %d: ENTRYPOINT %s: use the exec (JSON) form, so that signals reach macdist: %v", in.Line, in.Args, err)
			}
			entry = strings.Join(e, " ")
		}
	}
	if !openblas {
		t.Error("the runtime stage does not apt-get install libopenblas0")
	}
	if !copied {
		t.Errorf("the runtime stage does not COPY --from=%s %s /usr/local/bin/macdist", build.Name, built)
	}
	if !nonRoot {
		t.Error("the runtime stage runs as root: add USER")
	}
	if entry != "macdist" {
		t.Errorf("ENTRYPOINT %q, want [\"macdist\"]", entry)
	}

	// The ignore file keeps what the build needs.
	for _, l := range strings.Split(string(readFile(t, "docker/Dockerfile.dockerignore")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		for _, need := range []string{"go.mod", "go.sum", "cmd", "kernels", "cluster", "train"} {
			if ok, _ := filepath.Match(l, need); ok {
				t.Errorf("Dockerfile.dockerignore: %q excludes %s, which the build needs", l, need)
			}
		}
	}
}

// TestDockerfileChecker shows that the stage checks catch what they are
// for.
func TestDockerfileChecker(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"good", "ARG IMG=b\nFROM a AS build\nRUN x \\\n  y\nFROM ${IMG}\nCOPY --from=build /x /y\nCOPY --from=0 /x /y\n"},
		{"copy from unknown stage", "FROM a AS build\nFROM b\nCOPY --from=bulid /x /y\n"},
		{"copy from later stage", "FROM a AS one\nCOPY --from=two /x /y\nFROM b AS two\n"},
		{"copy from itself", "FROM a AS one\nCOPY --from=one /x /y\n"},
		{"copy from own index", "FROM a\nCOPY --from=0 /x /y\n"},
		{"bad FROM", "FROM a AS\n"},
		{"stage twice", "FROM a AS x\nFROM b AS x\n"},
		{"undeclared ARG", "FROM ${IMG} AS one\n"},
		{"instruction before FROM", "RUN true\nFROM a\n"},
		{"unknown instruction", "FROM a\nCOPPY x y\n"},
	} {
		stages, _, problems := dockerStages(parseDockerfile(tc.text))
		if (len(problems) == 0) != (tc.name == "good") {
			t.Errorf("%s: problems %q", tc.name, problems)
		}
		if tc.name == "good" && (len(stages) != 2 || stages[1].Image != "b" || len(stages[0].Instrs) != 1 || stages[0].Instrs[0].Args != "x y") {
			t.Errorf("good: parsed as %+v", stages)
		}
	}
}
