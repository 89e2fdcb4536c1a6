/*
 * airlock frontend: the web pages and /api/v1 of `airlock serve`, over the
 * Kubernetes store (the custom resources through the API server), for the
 * Kubernetes deployment (issue 6). It reconciles nothing (that is `airlock
 * operator`); it is the seed's "Airlock Frontend": people log in (local
 * accounts in its data directory, or the identity provider's tokens), make
 * Uploaded datasources, and upload through it: it scales the datasource's
 * uploader Deployment up, waits until it is ready, and proxies
 * /uploads/<deployment>/... to it with the proxy secret and the person's
 * name (src/web/uploader_route.h). docs/frontend.md, "Kubernetes".
 */
#include "auth/accounts.h"
#include "auth/oidc.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "kube/kube.h"
#include "resource/resource.h"
#include "store/store_kube.h"
#include "web/api.h"
#include "web/frontend.h"
#include "web/upload_auth.h"
#include "web/http_server.h"
#include "web/session.h"
#include "web/uploader_route.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void frontend_usage(FILE *out)
{
	fprintf(out,
		"usage: airlock frontend [--kubeconfig FILE] [--namespace NS] [--watch-namespace NS] [--config FILE]\n"
		"                        [--data-dir DIR] [--listen HOST:PORT] [--log-format json|text]\n\n"
		"Serves the airlock's web pages and /api/v1 over the Kubernetes API server (the custom\n"
		"resources), and proxies each datasource's uploads to its uploader Deployment, which it\n"
		"scales up when a person opens the upload page (docs/frontend.md, \"Kubernetes\").\n\n"
		"  --kubeconfig FILE  kubeconfig to use (default $KUBECONFIG, ~/.kube/config, then the\n"
		"                     in-cluster service account)\n"
		"  --namespace NS     where the uploaders run, the audit records live and, unless\n"
		"                     --watch-namespace says otherwise, the datasources are (default\n"
		"                     $AIRLOCK_NAMESPACE, else the kubeconfig's namespace: in a pod, its own)\n"
		"  --watch-namespace NS  where the datasources, bindings and workspaces are (default\n"
		"                     $AIRLOCK_WATCH_NAMESPACE; unset or empty = --namespace)\n"
		"  --config FILE      settings in YAML (docs/configuration.md: web, tokens, oidc, gates)\n"
		"  --data-dir DIR     local accounts and web sessions (airlock.db; default ./var)\n"
		"  --listen ADDR      address to serve on (default 127.0.0.1:8080; port 0 picks a free one)\n"
		"  --log-format F     json (default, or $AIRLOCK_LOG_FORMAT) or text\n\n"
		"Environment: AIRLOCK_UPLOADER_PROXY_SECRET_FILE (required: the secret the uploaders\n"
		"expect in X-Airlock-Proxy-Secret), AIRLOCK_UPLOADER_URL_TEMPLATE (default\n"
		"%s; {name} is the uploader, {namespace} the namespace).\n"
		"On the first start it creates the local account 'admin' with a random password in\n"
		"DIR/initial-admin-password. SIGTERM or SIGINT stops it.\n",
		UPLOADER_ROUTE_DEFAULT_TEMPLATE);
}

int cmd_frontend(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kubeconfig", required_argument, NULL, 'k' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "watch-namespace", required_argument, NULL, 'W' },
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kubeconfig = NULL, *ns_flag = NULL, *watch_flag = NULL, *cr_ns, *config_path = NULL, *data_dir = NULL, *listen = NULL;
	const char *log_format = getenv("AIRLOCK_LOG_FORMAT"), *ns;
	struct airlock_config cfg;
	struct kube_config kcfg;
	struct kube_client *kc = NULL;
	struct store *store = NULL;
	struct accounts *acc = NULL;
	struct oidc *oidc = NULL;
	struct session_store *sessions = NULL;
	struct uploader_route *route = NULL;
	struct http_server *srv = NULL;
	struct api_ctx actx;
	struct frontend_ctx fctx;
	char *db_path = NULL;
	sigset_t sigs;
	int opt, rc, sig = 0, have_cfg = 0, have_kcfg = 0, created = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': kubeconfig = optarg; break;
		case 'n': ns_flag = optarg; break;
		case 'W': watch_flag = optarg; break;
		case 'c': config_path = optarg; break;
		case 'd': data_dir = optarg; break;
		case 'l': listen = optarg; break;
		case 'f': log_format = optarg; break;
		case 'h': frontend_usage(stdout); return 0;
		default: frontend_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "airlock frontend: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (log_format && *log_format) {
		if (strcmp(log_format, "json") && strcmp(log_format, "text")) {
			fprintf(stderr, "airlock frontend: the log format (--log-format or AIRLOCK_LOG_FORMAT) is json or text\n");
			return 2;
		}
		log_set_text(!strcmp(log_format, "text"));
	}

	/* Signals are taken by sigwait below, so every thread must block them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&kcfg, 0, sizeof(kcfg));
	if ((rc = config_load(&cfg, config_path)))
		goto out;
	have_cfg = 1;
	if ((data_dir && (rc = config_set_data_dir(&cfg, data_dir))) || (listen && (rc = config_parse_listen(&cfg, listen))))
		goto out;
	if ((rc = kube_config_load(&kcfg, kubeconfig)))
		goto out;
	have_kcfg = 1;
	if ((rc = kube_client_new(&kc, &kcfg)))
		goto out;
	ns = ns_flag ? ns_flag
		     : (getenv("AIRLOCK_NAMESPACE") && *getenv("AIRLOCK_NAMESPACE")) ? getenv("AIRLOCK_NAMESPACE")
										     : kube_client_namespace(kc);
	if (!resource_is_dns_label(ns)) {
		rc = al_error_set(AL_ERR_INVALID, "the namespace \"%s\" is not a valid namespace name", ns ? ns : "");
		goto out;
	}
	/* The custom resources: as the operator's --watch-namespace, except
	 * that "every namespace" (empty) means --namespace here: the API keeps
	 * its objects in one namespace (api_namespace). */
	cr_ns = watch_flag ? watch_flag : getenv("AIRLOCK_WATCH_NAMESPACE");
	if (!cr_ns || !*cr_ns)
		cr_ns = ns;
	if (!resource_is_dns_label(cr_ns)) {
		rc = al_error_set(AL_ERR_INVALID, "the watch namespace \"%s\" is not a valid namespace name", cr_ns);
		goto out;
	}

	/* Local accounts and the sessions live in the data directory: private. */
	if (!(db_path = util_path_join(cfg.data_dir, "airlock.db"))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = util_mkdir_p(cfg.data_dir, 0700)) || (rc = accounts_open(&acc, db_path)) ||
	    (chmod(db_path, 0600) < 0 && (rc = al_error_set(AL_ERR_IO, "cannot protect %s", db_path))) ||
	    (rc = cli_ensure_first_admin(acc, cfg.data_dir, &created)) ||
	    (rc = session_store_open(&sessions, db_path, cfg.session_idle_seconds, cfg.token_ttl_seconds)) ||
	    (rc = store_kube_open(&store, kc, ns, NULL)))
		goto out;

	memset(&actx, 0, sizeof(actx));
	actx.store = store;
	actx.accounts = acc;
	/* Source credentials belong to the operator's Kubernetes Secret
	 * (docs/operator.md): the API's /secrets routes answer 503 here. */
	actx.creds = NULL;
	actx.cfg = &cfg;
	actx.namespace = cr_ns;
	if (cfg.oidc.issuer) {
		/* As in airlock serve (docs/oidc.md): a provider that is down now is
		 * not fatal, keys are fetched again on the first token. */
		if ((rc = oidc_open(&oidc, &cfg.oidc)))
			goto out;
		if (oidc_prefetch(oidc))
			log_warn("oidc: %s (will retry on the first token)", al_error_message());
		actx.oidc = oidc;
	}
	memset(&fctx, 0, sizeof(fctx));
	fctx.api = &actx;
	fctx.sessions = sessions;
	fctx.external_url = cfg.external_url;
	{
		struct uploader_route_options ro;
		memset(&ro, 0, sizeof(ro));
		ro.api = &actx;
		ro.kc = kc;
		ro.namespace = ns;
		ro.url_template = cli_flag_or_env(NULL, "AIRLOCK_UPLOADER_URL_TEMPLATE");
		ro.secret_file = cli_flag_or_env(NULL, "AIRLOCK_UPLOADER_PROXY_SECRET_FILE");
		ro.authenticate = upload_auth_session;
		ro.authenticate_ud = &fctx;
		if ((rc = uploader_route_open(&route, &ro)))
			goto out;
	}
	fctx.uploader_start = uploader_route_page_hook;
	fctx.uploader_start_ud = route;
	if ((rc = http_server_start_stream(&srv, cfg.listen_address, cfg.port, HTTP_SERVER_DEFAULT_MAX_BODY, frontend_handle,
					   &fctx, uploader_route_stream_ops(), route)))
		goto out;
	{
		const char *host = cfg.listen_address;
		int v6 = strchr(host, ':') != NULL;
		unsigned short port = http_server_port(srv);
		log_info("airlock frontend %s: API server %s, datasources in %s, uploaders in %s, serving on %s%s%s:%u",
			 AIRLOCK_VERSION, kcfg.server ? kcfg.server : "?", cr_ns, ns, v6 ? "[" : "", host, v6 ? "]" : "", port);
		printf("Airlock frontend is running at http://%s%s%s:%u/\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
		if (created)
			printf("First start: an account 'admin' was created. Its password is in %s/initial-admin-password\n",
			       cfg.data_dir);
		fflush(stdout);
	}

	while (sigwait(&sigs, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	log_info("signal %d: stopping", sig);
	rc = AL_OK;
out:
	if (rc)
		log_error("airlock frontend: %s", al_error_message());
	http_server_stop(srv);
	uploader_route_close(route);
	session_store_close(sessions);
	oidc_close(oidc);
	if (acc)
		accounts_close(acc);
	if (store)
		store_close(store);
	kube_client_free(kc);
	if (have_kcfg)
		kube_config_free(&kcfg);
	if (have_cfg)
		config_free(&cfg);
	free(db_path);
	return rc ? 1 : 0;
}
