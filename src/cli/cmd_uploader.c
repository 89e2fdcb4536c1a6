/*
 * airlock uploader: the uploader of one Uploaded datasource in Kubernetes
 * (the Deployment upload-<uid> the operator makes, scaled up by the
 * frontend): the tus engine (src/uploader/tus.h) over the datasource's
 * staging volume, and nothing else.
 *
 * Trust model: the uploader has no accounts and no service-account token.
 * People reach it only through the airlock frontend, which authenticates
 * them, decides whether they may upload to this datasource, and proxies the
 * request with two headers:
 *   X-Airlock-Proxy-Secret  the shared secret (a mounted Secret, the file
 *                           named by --proxy-secret-file); compared in
 *                           constant time; without it: 401
 *   X-Airlock-User          the person: uploads belong to them, and another
 *                           user's upload answers 404
 * The frontend strips both headers from what browsers send. Without a
 * secret the uploader refuses to start: it never trusts a header on its own.
 * "All files uploaded" (POST <base>/complete) seals the volume (manifest,
 * read-only files) and answers the manifest; the frontend, which proxied it
 * for the requester, then fires the gates' upload-complete event.
 */
#include "cli/commands.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "uploader/tus.h"
#include "uploader/tus_parse.h"
#include "uploader/upload_store.h"
#include "web/http_server.h"

#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET_HEADER "X-Airlock-Proxy-Secret"
#define USER_HEADER "X-Airlock-User"
#define SECRET_MIN 16
#define USER_MAX 256

struct uploader {
	char *dir;
	char *base;
	unsigned char secret_hash[crypto_generichash_BYTES];
};

static void uploader_usage(FILE *out)
{
	fprintf(out,
		"usage: airlock uploader [--dir DIR] [--name NAME] [--listen HOST:PORT] [--base-path PATH]\n"
		"                        [--proxy-secret-file FILE] [--max-file-bytes N] [--quota-bytes N]\n"
		"                        [--max-files N] [--expire-seconds N] [--sweep-seconds N] [--log-format json|text]\n\n"
		"Serves the tus 1.0.0 resumable upload protocol for one datasource's staging volume\n"
		"(docs/uploader.md). It trusts only requests the airlock frontend proxies to it.\n\n"
		"  --dir DIR               the staging volume (AIRLOCK_UPLOAD_DIR)\n"
		"  --name NAME             this uploader's name (AIRLOCK_UPLOADER_NAME; default uploader)\n"
		"  --listen ADDR           address to serve on (AIRLOCK_UPLOADER_LISTEN; default 127.0.0.1:8080)\n"
		"  --base-path PATH        URL path of the uploads (AIRLOCK_UPLOADER_BASE_PATH; default /uploads/NAME)\n"
		"  --proxy-secret-file F   the secret the frontend sends in " SECRET_HEADER "\n"
		"                          (AIRLOCK_UPLOADER_PROXY_SECRET_FILE); required\n"
		"  --max-file-bytes N      largest file (AIRLOCK_UPLOAD_MAX_FILE_BYTES; default 10 GiB)\n"
		"  --quota-bytes N         all files together (AIRLOCK_UPLOAD_QUOTA_BYTES; default 100 GiB)\n"
		"  --max-files N           number of files (AIRLOCK_UPLOAD_MAX_FILES; default 10000)\n"
		"  --expire-seconds N      unfinished uploads expire after N s without a write\n"
		"                          (AIRLOCK_UPLOAD_EXPIRE_SECONDS; default 86400)\n"
		"  --sweep-seconds N       how often expired uploads are removed (AIRLOCK_UPLOAD_SWEEP_SECONDS)\n"
		"  --log-format F          json (default) or text\n\n"
		"/healthz and /readyz answer without authentication.\n");
}

static int secret_ok(const struct uploader *u, const char *given)
{
	unsigned char h[crypto_generichash_BYTES];
	int ok;
	if (!given || !*given)
		return 0;
	/* Hashes first, so the comparison neither stops early nor tells the length. */
	crypto_generichash(h, sizeof(h), (const unsigned char *)given, strlen(given), NULL, 0);
	ok = sodium_memcmp(h, u->secret_hash, sizeof(h)) == 0;
	sodium_memzero(h, sizeof(h));
	return ok;
}

static int username_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > USER_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-' || c == '@' || c == '+'))
			return 0;
	}
	return 1;
}

static enum tus_route_result route(void *ud, const struct http_request *req, struct http_response *resp,
				   struct tus_route *out)
{
	struct uploader *u = ud;
	size_t blen = strlen(u->base);
	const char *user;

	memset(out, 0, sizeof(*out));
	if (!strcmp(req->path, "/healthz")) {
		http_response_json(resp, 200, json_pack("{s:s}", "status", "ok"));
		return TUS_ROUTE_ANSWERED;
	}
	if (!strcmp(req->path, "/readyz")) {
		if (access(u->dir, W_OK) == 0)
			http_response_json(resp, 200, json_pack("{s:s}", "status", "ready"));
		else
			http_response_error(resp, AL_ERR_UNAVAILABLE, "the staging volume is not writable");
		return TUS_ROUTE_ANSWERED;
	}
	if (strncmp(req->path, u->base, blen) || (req->path[blen] && req->path[blen] != '/'))
		return TUS_ROUTE_PASS;
	if (!(out->base = util_strdup(u->base))) {
		http_response_error(resp, AL_ERR_NOMEM, "out of memory");
		return TUS_ROUTE_ANSWERED;
	}
	if (!strcmp(req->method, "OPTIONS"))
		return TUS_ROUTE_OK;
	if (!secret_ok(u, http_request_header(req, SECRET_HEADER))) {
		http_response_error(resp, AL_ERR_UNAUTHORIZED, "this uploader is reached through the airlock frontend only");
		return TUS_ROUTE_ANSWERED;
	}
	user = http_request_header(req, USER_HEADER);
	if (!username_ok(user)) {
		http_response_error(resp, AL_ERR_UNAUTHORIZED, USER_HEADER ": the frontend must name the person");
		return TUS_ROUTE_ANSWERED;
	}
	out->dir = util_strdup(u->dir);
	out->user = util_strdup(user);
	if (!out->dir || !out->user) {
		http_response_error(resp, AL_ERR_NOMEM, "out of memory");
		return TUS_ROUTE_ANSWERED;
	}
	/* The frontend has decided who may upload and complete. */
	out->writable = 1;
	out->may_complete = 1;
	return TUS_ROUTE_OK;
}

static void not_found(void *userdata, const struct http_request *req, struct http_response *resp)
{
	(void)userdata;
	(void)req;
	http_response_error(resp, AL_ERR_NOT_FOUND, "no such route");
}

/* "host:port", "[v6]:port" or ":port" / "port". */
static int parse_listen(const char *s, char **host, unsigned short *port)
{
	const char *colon, *p;
	uint64_t n;

	*host = NULL;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return al_error_set(AL_ERR_INVALID, "--listen '%s': expected [ADDRESS]:PORT", s);
		*host = util_strndup(s + 1, (size_t)(end - s - 1));
		p = end + 2;
	} else if ((colon = strrchr(s, ':'))) {
		*host = colon == s ? util_strdup("127.0.0.1") : util_strndup(s, (size_t)(colon - s));
		p = colon + 1;
	} else {
		*host = util_strdup("127.0.0.1");
		p = s;
	}
	if (!*host)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (tus_parse_uint("--listen port", p, &n) || n > 65535) {
		free(*host);
		*host = NULL;
		return al_error_set(AL_ERR_INVALID, "--listen '%s': the port must be 0-65535", s);
	}
	*port = (unsigned short)n;
	return AL_OK;
}

static int read_secret(const char *path, struct uploader *u)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!path || !*path)
		return al_error_set(AL_ERR_INVALID,
				    "no proxy secret: set --proxy-secret-file or AIRLOCK_UPLOADER_PROXY_SECRET_FILE "
				    "(the uploader trusts only the frontend, which proves itself with that secret)");
	if ((rc = util_read_file(path, 4096, &text, &len)))
		return al_error_wrap(rc, "the proxy secret");
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (len < SECRET_MIN) {
		sodium_memzero(text, len);
		free(text);
		return al_error_set(AL_ERR_INVALID, "the proxy secret in %s is shorter than %d characters", path, SECRET_MIN);
	}
	crypto_generichash(u->secret_hash, sizeof(u->secret_hash), (const unsigned char *)text, len, NULL, 0);
	sodium_memzero(text, len);
	free(text);
	return AL_OK;
}

static const char *opt_or_env(const char *opt, const char *env)
{
	const char *v;
	if (opt)
		return opt;
	v = getenv(env);
	return v && *v ? v : NULL;
}

/* A command-line limit: exported to the environment reader's variable. */
static int set_limit_env(const char *env, const char *value)
{
	if (value && setenv(env, value, 1) < 0)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

int cmd_uploader(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "listen", required_argument, NULL, 'l' },
		{ "base-path", required_argument, NULL, 'b' },
		{ "proxy-secret-file", required_argument, NULL, 's' },
		{ "max-file-bytes", required_argument, NULL, 'M' },
		{ "quota-bytes", required_argument, NULL, 'Q' },
		{ "max-files", required_argument, NULL, 'F' },
		{ "expire-seconds", required_argument, NULL, 'E' },
		{ "sweep-seconds", required_argument, NULL, 'S' },
		{ "log-format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = NULL, *name = NULL, *listen = NULL, *base = NULL, *secret = NULL;
	const char *lim_args[5] = { NULL, NULL, NULL, NULL, NULL };
	static const char *const lim_env[5] = { "AIRLOCK_UPLOAD_MAX_FILE_BYTES", "AIRLOCK_UPLOAD_QUOTA_BYTES",
						"AIRLOCK_UPLOAD_MAX_FILES", "AIRLOCK_UPLOAD_EXPIRE_SECONDS",
						"AIRLOCK_UPLOAD_SWEEP_SECONDS" };
	struct tus_limits lim = { (uint64_t)10 << 30, (uint64_t)100 << 30, 10000, TUS_DEFAULT_EXPIRE_SECONDS };
	static const struct tus_host host = { .route = route, .completed = NULL, .route_free = NULL };
	struct uploader up;
	struct tus *t = NULL;
	struct tus_sweeper *sw = NULL;
	struct http_server *srv = NULL;
	struct upload_store *st = NULL;
	struct buf b;
	char *host_addr = NULL;
	unsigned short port = 8080;
	sigset_t sigs;
	int opt, rc, sig = 0, sweep = 0;

	memset(&up, 0, sizeof(up));
	buf_init(&b, 4096);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'n': name = optarg; break;
		case 'l': listen = optarg; break;
		case 'b': base = optarg; break;
		case 's': secret = optarg; break;
		case 'M': lim_args[0] = optarg; break;
		case 'Q': lim_args[1] = optarg; break;
		case 'F': lim_args[2] = optarg; break;
		case 'E': lim_args[3] = optarg; break;
		case 'S': lim_args[4] = optarg; break;
		case 'f':
			if (strcmp(optarg, "json") && strcmp(optarg, "text")) {
				fprintf(stderr, "airlock uploader: --log-format is json or text\n");
				return 2;
			}
			log_set_text(!strcmp(optarg, "text"));
			break;
		case 'h': uploader_usage(stdout); return 0;
		default: uploader_usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "airlock uploader: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	dir = opt_or_env(dir, "AIRLOCK_UPLOAD_DIR");
	name = opt_or_env(name, "AIRLOCK_UPLOADER_NAME");
	listen = opt_or_env(listen, "AIRLOCK_UPLOADER_LISTEN");
	base = opt_or_env(base, "AIRLOCK_UPLOADER_BASE_PATH");
	secret = opt_or_env(secret, "AIRLOCK_UPLOADER_PROXY_SECRET_FILE");
	if (!name)
		name = "uploader";
	rc = AL_OK;
	for (int i = 0; i < 5 && !rc; i++)
		rc = set_limit_env(lim_env[i], lim_args[i]);
	if (rc || (rc = tus_limits_from_env(&lim, &sweep)))
		goto out;
	if (!dir) {
		rc = al_error_set(AL_ERR_INVALID, "which staging volume? Set --dir or AIRLOCK_UPLOAD_DIR");
		goto out;
	}
	if (base) {
		size_t n = strlen(base);
		while (n > 1 && base[n - 1] == '/')
			n--;
		if (base[0] != '/' || n > 512 || strstr(base, "//") || strstr(base, "/../") || strchr(base, '?')) {
			rc = al_error_set(AL_ERR_INVALID, "--base-path '%.100s': expected an absolute URL path such as /uploads/NAME", base);
			goto out;
		}
		rc = buf_append(&b, base, n == 1 ? 0 : n);
	} else {
		rc = buf_appendf(&b, "/uploads/%s", name);
	}
	if (rc || !(up.base = buf_detach(&b)) || !(up.dir = util_strdup(dir))) {
		rc = rc ? rc : al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = read_secret(secret, &up)) || (rc = parse_listen(listen ? listen : "127.0.0.1:8080", &host_addr, &port)))
		goto out;
	/* The volume must take our state before we say we are here. */
	if ((rc = upload_store_open(&st, up.dir, 1)))
		goto out;
	upload_store_close(st);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((rc = tus_new(&t, &lim, &host, &up)) || (rc = tus_sweeper_start(&sw, t, up.dir, 0, sweep)) ||
	    (rc = http_server_start_stream(&srv, host_addr, port, 0, not_found, NULL, tus_stream_ops(), t)))
		goto out;
	{
		int v6 = strchr(host_addr, ':') != NULL;
		log_info("uploader %s serving %s on %s%s%s:%u%s", name, up.dir, v6 ? "[" : "", host_addr, v6 ? "]" : "",
			 http_server_port(srv), up.base);
		printf("Airlock uploader is running at http://%s%s%s:%u%s\n", v6 ? "[" : "", host_addr, v6 ? "]" : "",
		       http_server_port(srv), up.base);
		fflush(stdout);
	}
	while (sigwait(&sigs, &sig) != 0 || (sig != SIGINT && sig != SIGTERM))
		;
	log_info("signal %d: shutting down", sig);
out:
	if (rc)
		fprintf(stderr, "airlock uploader: %s\n", al_error_message());
	http_server_stop(srv);
	tus_sweeper_stop(sw);
	tus_free(t);
	sodium_memzero(up.secret_hash, sizeof(up.secret_hash));
	free(up.dir);
	free(up.base);
	free(host_addr);
	buf_free(&b);
	return rc ? 1 : 0;
}
