/*
 * airlock serve: the whole airlock in one process on one machine - the
 * SQLite store, local accounts, the API, the operator's reconcilers and the
 * local runtime (directories as volumes, child processes as jobs).
 */
#include "auth/accounts.h"
#include "auth/credstore.h"
#include "auth/oidc.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "operator/operator.h"
#include "runtime/runtime.h"
#include "store/store.h"
#include "uploader/upload_embed.h"
#include "web/api.h"
#include "web/frontend.h"
#include "web/http_server.h"
#include "web/session.h"
#include "web/upload_auth.h"
#include "web/upload_widget.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void serve_usage(FILE *out)
{
	fprintf(out,
		"usage: airlock serve [--config FILE] [--data-dir DIR] [--listen HOST:PORT] [--log-format json|text]\n\n"
		"Runs the embedded airlock: API, operator and job runtime in one process.\n\n"
		"  --config FILE      settings in YAML (see docs/configuration.md); optional\n"
		"  --data-dir DIR     where the database, staging and workspace data live (default ./var)\n"
		"  --listen ADDR      address to serve on (default 127.0.0.1:8080; port 0 picks a free one)\n"
		"  --log-format F     json (default) or text\n\n"
		"On the first start it creates the account 'admin' with a random password written to\n"
		"DIR/initial-admin-password (readable only by you) and says how to log in.\n");
}

static int ready_probe(void *ud)
{
	return controller_synced(ud);
}

int cli_ensure_first_admin(struct accounts *acc, const char *data_dir, int *created)
{
	size_t n = 0;
	char *password = NULL, *path = NULL;
	json_t *roles = NULL;
	int rc;

	*created = 0;
	if ((rc = accounts_count(acc, &n)) || n > 0)
		return rc;
	password = util_random_hex(12);
	path = util_path_join(data_dir, "initial-admin-password");
	roles = json_pack("[s]", "admin");
	if (!password || !path || !roles) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = accounts_user_create(acc, "admin", password, roles)))
		goto out;
	{
		size_t len = strlen(password);
		password[len] = '\0';
		if ((rc = util_write_file_atomic(path, password, len, 0600)))
			goto out;
	}
	*created = 1;
out:
	if (password) {
		memset(password, 0, strlen(password));
		free(password);
	}
	free(path);
	json_decref(roles);
	return rc;
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *data_dir = NULL, *listen = NULL;
	struct airlock_config cfg;
	struct store *store = NULL;
	struct accounts *acc = NULL;
	struct credstore *creds = NULL;
	struct oidc *oidc = NULL;
	struct runtime *rt = NULL;
	struct controller *ctl = NULL;
	struct http_server *srv = NULL;
	struct operator_ctx octx;
	struct api_ctx actx;
	struct session_store *sessions = NULL;
	struct upload_embed *uploads = NULL;
	struct frontend_ctx fctx;
	char self_exe[PATH_MAX];
	char *db_path = NULL, *key_path = NULL, *state_dir = NULL;
	int64_t t0 = util_monotonic_ms();
	sigset_t sigs;
	int opt, rc, sig = 0, created = 0;
	ssize_t n;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'd': data_dir = optarg; break;
		case 'l': listen = optarg; break;
		case 'f':
			if (strcmp(optarg, "json") && strcmp(optarg, "text")) {
				fprintf(stderr, "airlock serve: --log-format is json or text\n");
				return 2;
			}
			log_set_text(!strcmp(optarg, "text"));
			break;
		case 'h': serve_usage(stdout); return 0;
		default: serve_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "airlock serve: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if ((rc = config_load(&cfg, config_path))) {
		fprintf(stderr, "airlock serve: %s\n", al_error_message());
		return 1;
	}
	if ((data_dir && (rc = config_set_data_dir(&cfg, data_dir))) ||
	    (listen && (rc = config_parse_listen(&cfg, listen)))) {
		fprintf(stderr, "airlock serve: %s\n", al_error_message());
		config_free(&cfg);
		return 1;
	}

	/* Signals are taken by sigwait below, so every thread must block them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0) {
		rc = al_error_set(AL_ERR_IO, "cannot find the airlock executable (/proc/self/exe)");
		goto out;
	}
	self_exe[n] = '\0';
	db_path = util_path_join(cfg.data_dir, "airlock.db");
	key_path = util_path_join(cfg.data_dir, "credentials.key");
	state_dir = util_path_join(cfg.data_dir, "state");
	if (!db_path || !key_path || !state_dir) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* The database holds password and token hashes: private to this user. */
	if ((rc = util_mkdir_p(cfg.data_dir, 0700)) || (rc = store_sqlite_open(&store, db_path)) ||
	    (chmod(db_path, 0600) < 0 && (rc = al_error_set(AL_ERR_IO, "cannot protect %s", db_path))) ||
	    (rc = accounts_open(&acc, db_path)) || (rc = credstore_open(&creds, db_path, key_path)) ||
	    (rc = runtime_local_open(&rt, state_dir, cfg.staging_root, cfg.workspace_root, self_exe)) ||
	    (cfg.dlt_command && (rc = runtime_local_set_dlt_command(rt, cfg.dlt_command))) ||
	    (rc = cli_ensure_first_admin(acc, cfg.data_dir, &created)))
		goto out;

	memset(&octx, 0, sizeof(octx));
	octx.store = store;
	octx.runtime = rt;
	octx.cfg = &cfg;
	octx.creds = creds;
	octx.self_exe = self_exe;
	if ((rc = controller_start(&ctl, &octx, 30)))
		goto out;

	memset(&actx, 0, sizeof(actx));
	actx.store = store;
	actx.accounts = acc;
	actx.creds = creds;
	/* Identity-provider tokens (docs/oidc.md). A provider that is down now
	 * is not fatal: keys are fetched again on the first token. */
	if (cfg.oidc.issuer) {
		if ((rc = oidc_open(&oidc, &cfg.oidc)))
			goto out;
		if (oidc_prefetch(oidc))
			log_warn("oidc: %s (will retry on the first token)", al_error_message());
		actx.oidc = oidc;
	}
	actx.cfg = &cfg;
	actx.ready = ready_probe;
	actx.ready_ud = ctl;
	/* The web pages (docs/frontend.md) and, under /api, the API. Sessions
	 * live in the database, so a restart logs nobody out. */
	if ((rc = session_store_open(&sessions, db_path, cfg.session_idle_seconds, cfg.token_ttl_seconds)))
		goto out;
	memset(&fctx, 0, sizeof(fctx));
	fctx.api = &actx;
	fctx.sessions = sessions;
	fctx.external_url = cfg.external_url;
	/* The upload page's widget (docs/frontend.md): tus-js-client and
	 * /static/upload.js against the uploader's routes below. */
	fctx.upload_widget = upload_widget_html;
	fctx.upload_widget_ud = NULL;
	fctx.upload_widget_csp = UPLOAD_WIDGET_CSP;
	/* The uploader (docs/uploader.md): tus under /api/v1/datasources/<name>/uploads,
	 * streamed to the staging volumes; "all files uploaded" seals them. */
	{
		struct upload_embed_options uo;
		memset(&uo, 0, sizeof(uo));
		uo.api = &actx;
		uo.staging_root = cfg.staging_root;
		/* The browser widget uses the page's session cookie (with the
		 * CSRF header on writes); bearer tokens work as before. */
		uo.authenticate = upload_auth_session;
		uo.authenticate_ud = &fctx;
		if ((rc = upload_embed_limits(&cfg, &uo.limits, &uo.sweep_seconds)) || (rc = upload_embed_open(&uploads, &uo)))
			goto out;
		actx.seal_uploads = upload_embed_seal;
		actx.seal_uploads_ud = uploads;
	}
	if ((rc = http_server_start_stream(&srv, cfg.listen_address, cfg.port, HTTP_SERVER_DEFAULT_MAX_BODY, frontend_handle,
					   &fctx, tus_stream_ops(), upload_embed_tus(uploads))))
		goto out;

	{
		const char *host = cfg.listen_address;
		int v6 = strchr(host, ':') != NULL;
		unsigned short port = http_server_port(srv);
		log_info("airlock serving on %s%s%s:%u (data in %s, started in %lld ms)", v6 ? "[" : "", host,
			 v6 ? "]" : "", port, cfg.data_dir, (long long)(util_monotonic_ms() - t0));
		printf("Airlock is running at http://%s%s%s:%u/\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
		printf("  data:       %s\n  staging:    %s\n  workspaces: %s\n", cfg.data_dir, cfg.staging_root,
		       cfg.workspace_root);
		if (created)
			printf("\nFirst start: an account 'admin' was created. Its password is in\n"
			       "  %s/initial-admin-password\n"
			       "Open the address above in a browser and log in as 'admin' with it, or from the CLI:\n"
			       "  airlock login --server http://%s%s%s:%u --user admin --password-file %s/initial-admin-password\n",
			       cfg.data_dir, v6 ? "[" : "", host, v6 ? "]" : "", port, cfg.data_dir);
		printf("Stop with Ctrl-C.\n");
		fflush(stdout);
	}

	while (sigwait(&sigs, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	log_info("signal %d: shutting down", sig);
	rc = AL_OK;
out:
	if (rc)
		fprintf(stderr, "airlock serve: %s\n", al_error_message());
	http_server_stop(srv);
	upload_embed_close(uploads);
	session_store_close(sessions);
	controller_stop(ctl);
	oidc_close(oidc);
	if (rt)
		runtime_close(rt);
	if (creds)
		credstore_close(creds);
	if (acc)
		accounts_close(acc);
	if (store)
		store_close(store);
	free(db_path);
	free(key_path);
	free(state_dir);
	config_free(&cfg);
	return rc ? 1 : 0;
}
