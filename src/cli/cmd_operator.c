/*
 * airlock operator: the reconcilers of the embedded airlock driven against a
 * real Kubernetes API server (issue 4): the Kubernetes store (custom
 * resources), the Kubernetes runtime (PVCs, Secrets, Jobs, uploaders), leader
 * election on a Lease, the controller (kube_controller.h) and the metrics
 * listener. The Helm chart starts it as
 *   airlock operator --namespace NS --metrics-listen 0.0.0.0:9090 --leader-election
 * with every other setting in AIRLOCK_* variables
 * (deploy/helm/airlock/README.md, "What the operator receives").
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "kube/kube.h"
#include "operator/kube_controller.h"
#include "operator/kube_creds.h"
#include "operator/leader.h"
#include "operator/metrics.h"
#include "operator/operator.h"
#include "resource/resource.h"
#include "runtime/runtime_kube.h"
#include "runtime/uploader_scale.h"
#include "store/store_kube.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void operator_usage(FILE *out)
{
	fprintf(out,
		"usage: airlock operator [--kubeconfig FILE] [--namespace NS] [--watch-namespace NS]\n"
		"                        [--workers N] [--metrics-listen ADDR] [--leader-election]\n"
		"                        [--lease-name NAME] [--config FILE] [--log-format json|text]\n\n"
		"Runs the airlock's reconcilers against a Kubernetes API server: for each\n"
		"AnalyticsWorkspaceDataSource it makes the claims, Secrets, Jobs and uploaders the seed\n"
		"lists, records every transition in the status and as a Kubernetes Event, and cleans\n"
		"up through a finalizer when the datasource is deleted.\n\n"
		"  --kubeconfig FILE     kubeconfig to use (default $KUBECONFIG, ~/.kube/config, then the\n"
		"                        in-cluster service account)\n"
		"  --namespace NS        where the operator creates claims, Secrets, Jobs and uploaders,\n"
		"                        keeps its Lease and audit records, and reads the source-credentials\n"
		"                        Secret (default $AIRLOCK_NAMESPACE, else the kubeconfig's namespace)\n"
		"  --watch-namespace NS  whose datasources to reconcile (default $AIRLOCK_WATCH_NAMESPACE;\n"
		"                        set but empty = every namespace; unset = --namespace)\n"
		"  --workers N           reconciles run at once (default $AIRLOCK_WORKERS, else %d; at most %d)\n"
		"  --metrics-listen ADDR /metrics, /healthz, /readyz on ADDR (e.g. 0.0.0.0:9090; default off)\n"
		"  --leader-election     act only while holding the Lease (several replicas, one acts)\n"
		"  --lease-name NAME     the Lease (default $AIRLOCK_LEASE_NAME, else %s)\n"
		"  --config FILE         gates and checks settings in YAML (docs/configuration.md); optional\n"
		"  --log-format F        json (default, or $AIRLOCK_LOG_FORMAT) or text\n\n"
		"Environment (set by the Helm chart): AIRLOCK_POD_NAME (the Lease holder identity),\n"
		"AIRLOCK_LEASE_NAMESPACE, AIRLOCK_LEASE_DURATION_SECONDS (15), AIRLOCK_RENEW_DEADLINE_SECONDS (10),\n"
		"AIRLOCK_RETRY_PERIOD_SECONDS (2), AIRLOCK_SOURCE_CREDENTIALS_SECRET (%s),\n"
		"AIRLOCK_UPLOADER_IDLE_SECONDS (900: idle uploaders go back to 0 replicas after it),\n"
		"the runtime's AIRLOCK_* settings (docs/kube-runtime.md), and AIRLOCK_LOG_LEVEL\n"
		"(debug, info, warn, error; debug logs every Kubernetes API request). Guide: docs/operator.md.\n"
		"SIGTERM or SIGINT stops it cleanly: the reconciles in progress finish and the Lease is released.\n",
		KUBE_CONTROLLER_DEFAULT_WORKERS, KUBE_CONTROLLER_MAX_WORKERS, LEADER_DEFAULT_LEASE_NAME,
		KUBE_CREDS_DEFAULT_SECRET);
}

static int parse_workers(const char *what, const char *v, int *out)
{
	char *end = NULL;
	long n;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 1 || n > KUBE_CONTROLLER_MAX_WORKERS)
		return al_error_set(AL_ERR_INVALID, "%s \"%s\": must be a whole number from 1 to %d", what, v,
				    KUBE_CONTROLLER_MAX_WORKERS);
	*out = (int)n;
	return AL_OK;
}

int cmd_operator(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kubeconfig", required_argument, NULL, 'k' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "watch-namespace", required_argument, NULL, 'W' },
		{ "workers", required_argument, NULL, 'w' },
		{ "metrics-listen", required_argument, NULL, 'm' },
		{ "leader-election", no_argument, NULL, 'L' },
		{ "lease-name", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kubeconfig = NULL, *ns_flag = NULL, *watch_flag = NULL, *metrics_listen = NULL;
	const char *lease_name = NULL, *config_path = NULL, *log_format = getenv("AIRLOCK_LOG_FORMAT");
	const char *watch_ns, *cred_secret;
	int idle_seconds = 0, workers = 0, leader_election = 0, opt, rc, sig = 0, have_cfg = 0, have_kcfg = 0, have_ropts = 0;
	struct airlock_config cfg;
	struct kube_config kcfg;
	struct kube_client *kc = NULL;
	struct store *store = NULL;
	struct runtime *rt = NULL;
	struct runtime_kube_options ropts;
	struct leader_options lopts;
	struct leader *leader = NULL;
	struct kube_controller *ctl = NULL;
	struct kube_controller_options copts;
	struct metrics_server *metrics = NULL;
	struct kube_creds creds = { 0 };
	struct operator_ctx octx;
	char *ns = NULL;
	sigset_t sigs;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': kubeconfig = optarg; break;
		case 'n': ns_flag = optarg; break;
		case 'W': watch_flag = optarg; break;
		case 'w':
			if (parse_workers("--workers", optarg, &workers)) {
				fprintf(stderr, "airlock operator: %s\n", al_error_message());
				return 2;
			}
			break;
		case 'm': metrics_listen = optarg; break;
		case 'L': leader_election = 1; break;
		case 'l': lease_name = optarg; break;
		case 'c': config_path = optarg; break;
		case 'f': log_format = optarg; break;
		case 'h': operator_usage(stdout); return 0;
		default: operator_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "airlock operator: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	/* The chart's uploader.idleScaleDownSeconds. */
	if (getenv("AIRLOCK_UPLOADER_IDLE_SECONDS") && *getenv("AIRLOCK_UPLOADER_IDLE_SECONDS")) {
		const char *v = getenv("AIRLOCK_UPLOADER_IDLE_SECONDS");
		char *end = NULL;
		long n;
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end || n < 1 || n > UPLOADER_IDLE_MAX_S) {
			fprintf(stderr, "airlock operator: AIRLOCK_UPLOADER_IDLE_SECONDS \"%.40s\": must be a whole number "
					"of seconds from 1 to %d\n", v, UPLOADER_IDLE_MAX_S);
			return 2;
		}
		idle_seconds = (int)n;
	}
	/* The chart's operator.workers arrives as AIRLOCK_WORKERS; the flag wins. */
	if (!workers && getenv("AIRLOCK_WORKERS") && *getenv("AIRLOCK_WORKERS") &&
	    parse_workers("AIRLOCK_WORKERS", getenv("AIRLOCK_WORKERS"), &workers)) {
		fprintf(stderr, "airlock operator: %s\n", al_error_message());
		return 2;
	}
	if (log_format && *log_format) {
		if (strcmp(log_format, "json") && strcmp(log_format, "text")) {
			fprintf(stderr, "airlock operator: the log format (--log-format or AIRLOCK_LOG_FORMAT) is json or text, not \"%s\"\n",
				log_format);
			return 2;
		}
		log_set_text(!strcmp(log_format, "text"));
	}
	if (metrics_listen) {
		char *h = NULL;
		unsigned short p;
		if (metrics_parse_listen(metrics_listen, &h, &p)) {
			fprintf(stderr, "airlock operator: %s\n", al_error_message());
			return 2;
		}
		free(h);
	}

	/* Signals are taken by sigwait below, so every thread must block them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&octx, 0, sizeof(octx));
	memset(&copts, 0, sizeof(copts));
	memset(&kcfg, 0, sizeof(kcfg));
	if ((rc = config_load(&cfg, config_path)))
		goto out;
	have_cfg = 1;
	/* The chart's runner.default. */
	if (getenv("AIRLOCK_DEFAULT_RUNNER") && *getenv("AIRLOCK_DEFAULT_RUNNER") &&
	    (rc = config_set_default_runner(&cfg, getenv("AIRLOCK_DEFAULT_RUNNER")))) {
		al_error_wrap(rc, "AIRLOCK_DEFAULT_RUNNER");
		goto out;
	}
	/* Job deadlines come from the chart (AIRLOCK_JOB_ACTIVE_DEADLINE_SECONDS,
	 * the runtime's setting), not from the embedded default. */
	cfg.job_timeout_seconds = 0;
	if ((rc = kube_config_load(&kcfg, kubeconfig)))
		goto out;
	have_kcfg = 1;
	if ((rc = kube_client_new(&kc, &kcfg)))
		goto out;

	/* The workload namespace: --namespace, else the runtime's variables,
	 * else the kubeconfig's. */
	if ((rc = runtime_kube_options_init(&ropts)))
		goto out;
	have_ropts = 1;
	if ((rc = runtime_kube_options_from_env(&ropts)))
		goto out;
	if (ns_flag || (!getenv("AIRLOCK_NAMESPACE") && !getenv("AIRLOCK_LEASE_NAMESPACE"))) {
		const char *n = ns_flag ? ns_flag : kube_client_namespace(kc);
		if (!resource_is_dns_label(n)) {
			rc = al_error_set(AL_ERR_INVALID, "--namespace \"%s\" is not a valid namespace name", n);
			goto out;
		}
		free(ropts.namespace);
		if (!(ropts.namespace = util_strdup(n))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (!(ns = util_strdup(ropts.namespace))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* Whose datasources: --watch-namespace, else AIRLOCK_WATCH_NAMESPACE
	 * (empty = every namespace), else the workload namespace. */
	watch_ns = watch_flag ? watch_flag : getenv("AIRLOCK_WATCH_NAMESPACE") ? getenv("AIRLOCK_WATCH_NAMESPACE") : ns;
	if (*watch_ns && !resource_is_dns_label(watch_ns)) {
		rc = al_error_set(AL_ERR_INVALID, "the watch namespace \"%s\" is not a valid namespace name", watch_ns);
		goto out;
	}
	cred_secret = cli_flag_or_env(NULL, "AIRLOCK_SOURCE_CREDENTIALS_SECRET");
	if (!cred_secret)
		cred_secret = KUBE_CREDS_DEFAULT_SECRET;

	if ((rc = store_kube_open(&store, kc, ns, NULL)) || (rc = runtime_kube_open(&rt, kc, &ropts)))
		goto out;

	if (leader_election) {
		leader_options_init(&lopts);
		if ((rc = leader_options_from_env(&lopts)))
			goto out;
		if (lease_name)
			lopts.lease_name = lease_name;
		if (!lopts.lease_namespace)
			lopts.lease_namespace = ns;
		if ((rc = leader_start(&leader, kc, &lopts)))
			goto out;
	}

	kube_creds_init(&creds, kc, ns, cred_secret);
	octx.store = store;
	octx.runtime = rt;
	octx.cfg = &cfg;
	octx.cred_lookup = kube_creds_lookup;
	octx.cred_lookup_ud = &creds;

	copts.kc = kc;
	copts.watch_namespace = watch_ns;
	copts.jobs_namespace = ns;
	copts.uploader_idle_seconds = idle_seconds;
	copts.workers = workers;
	copts.is_leader = leader ? leader_check : NULL;
	copts.leader_ud = leader;
	copts.instance = getenv("AIRLOCK_POD_NAME") && *getenv("AIRLOCK_POD_NAME") ? getenv("AIRLOCK_POD_NAME")
										       : leader_identity(leader);
	if ((rc = kube_controller_start(&ctl, &octx, &copts)))
		goto out;
	if (metrics_listen) {
		struct metrics_source src = { .controller = ctl, .leader = leader, .store = store, .kc = kc };
		if ((rc = metrics_start(&metrics, metrics_listen, &src)))
			goto out;
	}
	log_info("airlock operator %s: API server %s, workloads in %s, datasources in %s, leader election %s, metrics %s",
		 AIRLOCK_VERSION, kcfg.server ? kcfg.server : "?", ns, *watch_ns ? watch_ns : "every namespace",
		 leader ? "on" : "off", metrics_listen ? metrics_listen : "off");
	if (metrics) {
		/* The bound port, for port 0 (tests). */
		log_info("metrics listening on port %u", metrics_port(metrics));
	}

	while (sigwait(&sigs, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	log_info("signal %d: stopping (finishing reconciles in progress, then releasing the lease)", sig);
	rc = AL_OK;
out:
	if (rc)
		log_error("airlock operator: %s", al_error_message());
	/* Stop acting before letting go of the Lease. */
	kube_controller_stop(ctl);
	leader_stop(leader);
	metrics_stop(metrics);
	kube_creds_free(&creds);
	if (rt)
		runtime_close(rt);
	if (store)
		store_close(store);
	kube_client_free(kc);
	if (have_kcfg)
		kube_config_free(&kcfg);
	if (have_ropts)
		runtime_kube_options_free(&ropts);
	if (have_cfg)
		config_free(&cfg);
	free(ns);
	if (!rc)
		log_info("airlock operator stopped");
	return rc ? 1 : 0;
}
