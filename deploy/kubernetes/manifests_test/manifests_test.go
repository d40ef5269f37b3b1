// Package manifests_test checks the Kubernetes manifests in deploy/kubernetes
// without a cluster: it renders the kustomization with kubectl, decodes every
// object strictly into the Kubernetes API types (an unknown or duplicated
// field fails), and checks that the pieces fit together — the StatefulSet
// and its Services select the same pods, ports are named consistently, the
// node id comes from the pod ordinal, readiness uses the broker's gRPC
// health service, and termination leaves time for leadership hand-off.
//
// It is its own Go module so that the main module does not depend on the
// Kubernetes API packages. scripts/test-deploy.sh runs it; by hand:
//
//	cd deploy/kubernetes/manifests_test && go test .
//
// Without kubectl it skips, unless CI=true.
package manifests_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Ports the broker image listens on (deploy/Dockerfile).
const (
	clientPort = 9420
	gossipPort = 9421
	raftPort   = 9422
	peerPort   = 9424
	httpPort   = 9423
	imageUID   = 10001
)

// renderDir runs kubectl kustomize on dir.
func renderDir(t *testing.T, dir string) []byte {
	t.Helper()
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		var err error
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("kubectl not found (CI=true: a missing tool is a failure; .ci/run installs it)")
			}
			t.Skip("kubectl not found: cannot render the kustomization (set KUBECTL or install kubectl)")
		}
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

func newDecoder() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

// decodeAll decodes a multi-document YAML stream strictly: unknown kinds,
// unknown fields and duplicate fields are errors.
func decodeAll(data []byte) ([]runtime.Object, error) {
	dec := newDecoder()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d (%v): %w", i, gvk, err)
		}
		objs = append(objs, obj)
	}
}

// manifests is the rendered kustomization, by kind.
type manifests struct {
	sts      *appsv1.StatefulSet
	services map[string]*corev1.Service
	pdb      *policyv1.PodDisruptionBudget
}

func load(t *testing.T) manifests {
	t.Helper()
	return loadDir(t, "..")
}

func loadDir(t *testing.T, dir string) manifests {
	t.Helper()
	objs, err := decodeAll(renderDir(t, dir))
	if err != nil {
		t.Fatalf("strict decode of the rendered manifests: %v", err)
	}
	m := manifests{services: map[string]*corev1.Service{}}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			if m.sts != nil {
				t.Fatalf("two StatefulSets: %s and %s", m.sts.Name, o.Name)
			}
			m.sts = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdb = o
		default:
			t.Fatalf("unexpected object %T", o)
		}
	}
	if m.sts == nil || m.pdb == nil || len(m.services) != 2 {
		t.Fatalf("want one StatefulSet, two Services and a PodDisruptionBudget; got sts=%v services=%d pdb=%v",
			m.sts != nil, len(m.services), m.pdb != nil)
	}
	return m
}

func (m manifests) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := m.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("want one container in the pod, got %d", len(cs))
	}
	return cs[0]
}

func env(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

// A typo in a field name must not slip through: the decoder is strict.
func TestStrictDecoderRejectsUnknownAndDuplicateFields(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  publishNotReadyAddress: true\n",
		"duplicate":     "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  name: y\n",
		"unknown kind":  "apiVersion: v1\nkind: Servise\nmetadata:\n  name: x\n",
	} {
		if _, err := decodeAll([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if _, err := decodeAll([]byte("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  publishNotReadyAddresses: true\n")); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
}

func TestStatefulSet(t *testing.T) {
	m := load(t)
	s := m.sts
	c := m.container(t)
	pod := s.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v", s.Spec.Selector, pod.Labels)
	}
	if s.Spec.Replicas == nil || *s.Spec.Replicas < 3 {
		t.Errorf("replicas %v: want at least 3 (replication factor 3)", s.Spec.Replicas)
	}
	// --bootstrap-expect waits for all brokers: OrderedReady would wait for
	// skein-0 to be ready before starting skein-1, forever.
	if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q: brokers bootstrap together, want Parallel", s.Spec.PodManagementPolicy)
	}
	e := env(c)
	if be := e["SKEIN_BOOTSTRAP_EXPECT"].Value; s.Spec.Replicas == nil || be != fmt.Sprint(*s.Spec.Replicas) {
		t.Errorf("SKEIN_BOOTSTRAP_EXPECT %q differs from replicas %s", be, fmtPtr(s.Spec.Replicas))
	}

	// Node id = pod ordinal, from the label the StatefulSet controller sets.
	id := e["SKEIN_NODE_ID"]
	if id.ValueFrom == nil || id.ValueFrom.FieldRef == nil ||
		id.ValueFrom.FieldRef.FieldPath != "metadata.labels['apps.kubernetes.io/pod-index']" {
		t.Errorf("SKEIN_NODE_ID must come from the pod-index label, got %+v", id)
	}

	// Stable names through the headless Service, which is the gossip seed.
	headless := m.services[s.Spec.ServiceName]
	if headless == nil {
		t.Fatalf("serviceName %q names no Service", s.Spec.ServiceName)
	}
	if got, want := e["SKEIN_ADVERTISE_ADDR"].Value, fmt.Sprintf("$(POD_NAME).%s.$(POD_NAMESPACE).svc:%d", headless.Name, clientPort); got != want {
		t.Errorf("SKEIN_ADVERTISE_ADDR %q, want %q", got, want)
	}
	if got, want := e["SKEIN_JOIN"].Value, fmt.Sprintf("%s.$(POD_NAMESPACE).svc:%d", headless.Name, gossipPort); got != want {
		t.Errorf("SKEIN_JOIN %q, want %q (the headless Service)", got, want)
	}
	for name, port := range map[string]int{"SKEIN_GOSSIP_ADDR": gossipPort, "SKEIN_RAFT_ADDR": raftPort, "SKEIN_PEER_ADDR": peerPort} {
		if got, want := e[name].Value, fmt.Sprintf("$(POD_IP):%d", port); got != want {
			t.Errorf("%s %q, want %q", name, got, want)
		}
	}
	// $(VAR) expands only variables defined earlier in the list; anything
	// else reaches the broker literally.
	defined := map[string]bool{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, v := range c.Env {
		for _, m := range ref.FindAllStringSubmatch(v.Value, -1) {
			if !defined[m[1]] {
				t.Errorf("%s refers to $(%s), which is not defined before it", v.Name, m[1])
			}
		}
		defined[v.Name] = true
	}
	for _, name := range []string{"POD_NAME", "POD_NAMESPACE", "POD_IP"} {
		if e[name].ValueFrom == nil || e[name].ValueFrom.FieldRef == nil {
			t.Errorf("%s must come from the downward API", name)
		}
	}
	for _, v := range c.Env {
		if v.ValueFrom != nil && v.ValueFrom.FieldRef != nil && !downwardEnvField.MatchString(v.ValueFrom.FieldRef.FieldPath) {
			t.Errorf("%s: fieldPath %q is not one the downward API offers to environment variables", v.Name, v.ValueFrom.FieldRef.FieldPath)
		}
	}

	// Ports.
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	for name, want := range map[string]corev1.ContainerPort{
		"client":     {ContainerPort: clientPort, Protocol: corev1.ProtocolTCP},
		"gossip":     {ContainerPort: gossipPort, Protocol: corev1.ProtocolTCP},
		"gossip-udp": {ContainerPort: gossipPort, Protocol: corev1.ProtocolUDP},
		"raft":       {ContainerPort: raftPort, Protocol: corev1.ProtocolTCP},
		"peer":       {ContainerPort: peerPort, Protocol: corev1.ProtocolTCP},
		"http":       {ContainerPort: httpPort, Protocol: corev1.ProtocolTCP},
	} {
		if p, ok := ports[name]; !ok || p.ContainerPort != want.ContainerPort || p.Protocol != want.Protocol {
			t.Errorf("container port %q = %+v, want %d/%s", name, p, want.ContainerPort, want.Protocol)
		}
	}

	// Readiness: the gRPC health service, natively or through the CLI.
	rp := c.ReadinessProbe
	switch {
	case rp == nil:
		t.Error("no readiness probe")
	case rp.GRPC != nil:
		if rp.GRPC.Port != clientPort {
			t.Errorf("gRPC readiness probe on port %d, want %d", rp.GRPC.Port, clientPort)
		}
	case rp.Exec != nil:
		if len(rp.Exec.Command) < 2 || !strings.HasSuffix(rp.Exec.Command[0], "broker") || rp.Exec.Command[1] != "healthcheck" {
			t.Errorf("exec readiness probe %q: want broker healthcheck", rp.Exec.Command)
		}
	default:
		t.Errorf("readiness probe %+v: want grpc on %d or exec broker healthcheck", rp.ProbeHandler, clientPort)
	}
	if lp := c.LivenessProbe; lp != nil && lp.HTTPGet != nil {
		if lp.HTTPGet.Path != "/healthz" || !portMatches(lp.HTTPGet.Port, ports, httpPort) {
			t.Errorf("liveness probe %+v: want /healthz on the http port", lp.HTTPGet)
		}
	}

	// Leadership hand-off on SIGTERM needs time.
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 30 {
		t.Errorf("terminationGracePeriodSeconds %s: want at least 30", fmtPtr(g))
	}

	// Storage: a claim per pod, mounted at /data.
	if len(s.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volume claim template, got %d", len(s.Spec.VolumeClaimTemplates))
	}
	vct := s.Spec.VolumeClaimTemplates[0]
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.Name == vct.Name && vm.MountPath == "/data" {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("volume claim %q is not mounted at /data", vct.Name)
	}
	if _, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
		t.Error("volume claim template requests no storage")
	}
	if e["SKEIN_DATA_DIR"].Value != "" && e["SKEIN_DATA_DIR"].Value != "/data" {
		t.Errorf("SKEIN_DATA_DIR %q is not the mounted /data", e["SKEIN_DATA_DIR"].Value)
	}

	// The image's user, never root; the volume writable by its group.
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != imageUID ||
		psc.FSGroup == nil || *psc.FSGroup != imageUID {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, runAsUser and fsGroup %d", psc, imageUID)
	}
	if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container must not allow privilege escalation")
	}
	// Services named skein-* would inject SKEIN_*_SERVICE_HOST and friends.
	if l := pod.Spec.EnableServiceLinks; l == nil || *l {
		t.Error("enableServiceLinks must be false: service variables share the broker's SKEIN_ prefix")
	}
	if c.Image == "" {
		t.Error("no image")
	}
}

// downwardEnvField is what the API server accepts as an env fieldRef.
var downwardEnvField = regexp.MustCompile(`^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]|` +
	`spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$`)

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func portMatches(p intstr.IntOrString, ports map[string]corev1.ContainerPort, want int32) bool {
	if p.Type == intstr.String {
		cp, ok := ports[p.StrVal]
		return ok && cp.ContainerPort == want
	}
	return p.IntVal == want
}

func TestServices(t *testing.T) {
	m := load(t)
	c := m.container(t)
	podLabels := labels.Set(m.sts.Spec.Template.Labels)
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	headless := m.services[m.sts.Spec.ServiceName]
	if headless == nil {
		t.Fatalf("no headless Service %q", m.sts.Spec.ServiceName)
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s: clusterIP %q, want None (headless)", headless.Name, headless.Spec.ClusterIP)
	}
	if !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s must publish not-ready addresses: brokers find each other before any is ready", headless.Name)
	}
	var client *corev1.Service
	for name, svc := range m.services {
		if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
			t.Errorf("Service name %q: %v", name, errs)
		}
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s selects %v, which does not match the broker pods %v", name, svc.Spec.Selector, podLabels)
		}
		for _, p := range svc.Spec.Ports {
			cp, ok := ports[p.TargetPort.StrVal]
			if p.TargetPort.Type != intstr.String || !ok {
				t.Errorf("Service %s port %s: targetPort %v names no container port", name, p.Name, p.TargetPort.String())
				continue
			}
			if cp.ContainerPort != p.Port || cp.Protocol != p.Protocol {
				t.Errorf("Service %s port %s (%d/%s) differs from container port %s (%d/%s)",
					name, p.Name, p.Port, p.Protocol, cp.Name, cp.ContainerPort, cp.Protocol)
			}
		}
		if svc != headless {
			client = svc
		}
	}
	if client == nil {
		t.Fatal("no client Service")
	}
	if client.Spec.ClusterIP == corev1.ClusterIPNone || len(client.Spec.Ports) != 1 || client.Spec.Ports[0].Port != clientPort {
		t.Errorf("client Service %s: want a cluster IP with port %d only, got %+v", client.Name, clientPort, client.Spec)
	}
	have := map[string]bool{}
	for _, p := range headless.Spec.Ports {
		have[fmt.Sprintf("%d/%s", p.Port, p.Protocol)] = true
	}
	for _, want := range []string{"9420/TCP", "9421/TCP", "9421/UDP", "9422/TCP", "9424/TCP"} {
		if !have[want] {
			t.Errorf("headless Service lacks %s", want)
		}
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	m := load(t)
	pdb := m.pdb
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(m.sts.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget selects %v, not the broker pods", pdb.Spec.Selector)
	}
	// One broker down at a time keeps acks=all (min.insync 2 of 3) and the
	// controller majority.
	replicas := int(*m.sts.Spec.Replicas)
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		if v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, replicas, true); err != nil || v != 1 {
			t.Errorf("maxUnavailable %s: want 1", pdb.Spec.MaxUnavailable.String())
		}
	case pdb.Spec.MinAvailable != nil:
		if v, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, replicas, true); err != nil || v != replicas-1 {
			t.Errorf("minAvailable %s: want %d", pdb.Spec.MinAvailable.String(), replicas-1)
		}
	default:
		t.Error("PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
}

// The secure variant (deploy/kubernetes-secure) is the same cluster with
// TLS, the gossip key and ACLs from secrets mounted read-only, and probes
// that speak HTTPS (the kubelet's gRPC probe cannot speak TLS).
func TestSecureVariant(t *testing.T) {
	m := loadDir(t, "../../kubernetes-secure")
	c := m.container(t)
	e := env(c)
	for name, want := range map[string]string{
		"SKEIN_TLS_CERT_FILE":   "/etc/skein/tls/tls.crt",
		"SKEIN_TLS_KEY_FILE":    "/etc/skein/tls/tls.key",
		"SKEIN_TLS_CA_FILE":     "/etc/skein/tls/ca.crt",
		"SKEIN_GOSSIP_KEY_FILE": "/etc/skein/gossip/key",
		"SKEIN_AUTHORIZER":      "acl",
		"SKEIN_SUPER_USERS":     "User:admin",
	} {
		if e[name].Value != want {
			t.Errorf("%s = %q, want %q", name, e[name].Value, want)
		}
	}
	if _, ok := e["SKEIN_GOSSIP_KEY"]; ok {
		t.Error("the gossip key in the environment: mount it as a file")
	}
	// The base settings are still there.
	if e["SKEIN_PEER_ADDR"].Value == "" || e["SKEIN_BOOTSTRAP_EXPECT"].Value == "" {
		t.Errorf("the base environment is gone: %v", c.Env)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.GRPC != nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v: want httpGet over HTTPS", p)
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	secrets := map[string]string{}
	for _, v := range m.sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
				t.Errorf("secret volume %s readable by others: %v", v.Name, v.Secret.DefaultMode)
			}
		}
	}
	for vol, secret := range map[string]string{"tls": "skein-broker-tls", "gossip": "skein-gossip"} {
		if secrets[vol] != secret || !mounts[vol].ReadOnly {
			t.Errorf("volume %s: secret %q (want %q), mount %+v (want read-only)", vol, secrets[vol], secret, mounts[vol])
		}
	}
	if _, ok := mounts["data"]; !ok {
		t.Error("the data volume mount is gone")
	}
}
