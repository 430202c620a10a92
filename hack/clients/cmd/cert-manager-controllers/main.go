// Command cert-manager-controllers runs cert-manager's own certificate controllers (v1.21.1, from the Go
// module proxy) against a kubeconfig, for trusted-issuer's cluster tests and `make demo-cluster`.
//
// cert-manager's cmd/controller is a nested module with a replace to its repository root, which the
// module proxy cannot serve, so this is the part of cmd/controller/app that our case needs: the
// controller context from pkg/controller.ContextOptions, the controllers a user's install runs for an
// external issuer (they register themselves in init()), the option defaults that live in cert-manager's
// internal packages set here explicitly, and no leader election (one process per test).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
)

// The controllers cert-manager's default install runs that matter to an external issuer's Certificates.
var defaultControllers = []string{
	"certificaterequests-approver",
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server (required)")
	controllers := flag.String("controllers", strings.Join(defaultControllers, ","),
		"comma-separated controllers to run; a leading '-' removes one from the default set (e.g. -certificaterequests-approver)")
	namespace := flag.String("namespace", "", "watch only this namespace (all when empty)")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"namespace of cluster-scoped issuers' resources (cert-manager's default)")
	workers := flag.Int("workers", 5, "workers per controller (cert-manager's default)")
	minBackoff := flag.Duration("certificate-request-minimum-backoff-duration", time.Hour,
		"cert-manager's default: a failed issuance is retried after this, doubling")
	maxBackoff := flag.Duration("certificate-request-maximum-backoff-duration", 32*time.Hour, "cert-manager's default")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "cert-manager-controllers: --kubeconfig is required")
		os.Exit(2)
	}
	enabled, err := selectControllers(*controllers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controllers:", err)
		os.Exit(2)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	log := logf.Log.WithName("cert-manager-controllers")
	ctx = logf.NewContext(ctx, log)

	// cert-manager's defaults (internal/apis/config/controller/v1alpha1/defaults.go), set explicitly.
	opts := controllerpkg.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		Namespace:          *namespace,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: *clusterResourceNamespace,
		},
		IngressShimOptions: controllerpkg.IngressShimOptions{
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
			GatewayAPIExtraProtocols:          sets.New[string](),
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			EnableOwnerRef:                           false,
			CopiedAnnotationPrefixes:                 []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			CertificateRequestMinimumBackoffDuration: *minBackoff,
			CertificateRequestMaximumBackoffDuration: *maxBackoff,
		},
		SchedulerOptions: controllerpkg.SchedulerOptions{MaxConcurrentChallenges: 60},
	}
	factory, err := controllerpkg.NewContextFactory(ctx, opts)
	if err != nil {
		log.Error(err, "building the controller context")
		os.Exit(1)
	}

	var run []func() error
	for _, name := range enabled {
		construct := controllerpkg.Known()[name]
		iface, err := construct(factory)
		if err != nil {
			log.Error(err, "constructing a controller", "controller", name)
			os.Exit(1)
		}
		run = append(run, func() error { return iface.Run(*workers, ctx) })
		log.Info("controller enabled", "controller", name)
	}

	// Informers registered by the constructors start only now, as cmd/controller/app does.
	shared, err := factory.Build()
	if err != nil {
		log.Error(err, "building the informer context")
		os.Exit(1)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())

	var wg sync.WaitGroup
	failed := make(chan error, len(run))
	for _, r := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r(); err != nil {
				failed <- err
				cancel()
			}
		}()
	}
	fmt.Fprintln(os.Stderr, "cert-manager-controllers: running", strings.Join(enabled, ","))
	wg.Wait()
	close(failed)
	if err := <-failed; err != nil {
		log.Error(err, "a controller failed")
		os.Exit(1)
	}
}

// selectControllers reads --controllers: names replace the default set, '-name' entries remove from it.
func selectControllers(spec string) ([]string, error) {
	known := controllerpkg.Known()
	chosen := sets.New[string]()
	removals := false
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.HasPrefix(item, "-") {
			removals = true
			continue
		}
		if _, ok := known[item]; !ok {
			return nil, fmt.Errorf("unknown controller %q", item)
		}
		chosen.Insert(item)
	}
	if removals {
		if chosen.Len() == 0 {
			chosen.Insert(defaultControllers...)
		}
		for _, item := range strings.Split(spec, ",") {
			item = strings.TrimSpace(item)
			if name, ok := strings.CutPrefix(item, "-"); ok {
				if _, ok := known[name]; !ok {
					return nil, fmt.Errorf("unknown controller %q", name)
				}
				chosen.Delete(name)
			}
		}
	}
	names := sets.List(chosen)
	sort.Strings(names)
	return names, nil
}
