/*
 * config.c - where the Kubernetes client's server and credentials come from:
 * a kubeconfig file (its current context) or the in-cluster service account.
 *
 * What is supported is what a service account or a CI kubeconfig uses: a
 * server with a CA (file or base64 data) or insecure-skip-tls-verify, and a
 * bearer token (inline or tokenFile) or a client certificate and key (file or
 * base64 data). Anything else that carries credentials (exec plugins,
 * auth-provider, basic auth) is refused by name rather than ignored, so a
 * request never goes out silently unauthenticated.
 */
#include "kube/kube.h"
#include "kube/kube_internal.h"

#include "common/error.h"
#include "common/util.h"
#include "resource/resource.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KUBE_FILE_MAX ((size_t)1 << 20) /* kubeconfig, CA bundle, cert, key, token */
#define SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"

void kube_config_free(struct kube_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->server);
	free(cfg->ca_pem);
	free(cfg->client_cert_pem);
	if (cfg->client_key_pem) {
		sodium_memzero(cfg->client_key_pem, strlen(cfg->client_key_pem));
		free(cfg->client_key_pem);
	}
	if (cfg->token) {
		sodium_memzero(cfg->token, strlen(cfg->token));
		free(cfg->token);
	}
	free(cfg->token_file);
	free(cfg->namespace);
	memset(cfg, 0, sizeof(*cfg));
}

/* Trims trailing whitespace in place (token files end with a newline). */
static void rtrim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

/* A token goes into an HTTP header: printable ASCII only. */
static int token_ok(const char *t)
{
	if (!t[0])
		return 0;
	for (const unsigned char *p = (const unsigned char *)t; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			return 0;
	return 1;
}

int kube_read_token_file(const char *path, char **out)
{
	char *t = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if ((rc = util_read_file(path, 64 * 1024, &t, &len)) < 0)
		return al_error_wrap(rc, "bearer token file");
	if (strlen(t) != len) {
		sodium_memzero(t, len);
		free(t);
		return al_error_set(AL_ERR_INVALID, "bearer token file %s holds a NUL byte", path);
	}
	rtrim(t);
	if (!token_ok(t)) {
		sodium_memzero(t, len);
		free(t);
		return al_error_set(AL_ERR_INVALID,
				    "bearer token file %s is empty or holds characters other than printable ASCII", path);
	}
	*out = t;
	return AL_OK;
}

/* path relative to the kubeconfig's directory, as kubectl resolves it */
static char *resolve(const char *dir, const char *path)
{
	if (path[0] == '/' || !dir)
		return util_strdup(path);
	return util_path_join(dir, path);
}

static int read_pem_file(const char *dir, const char *path, const char *what, char **out)
{
	char *full = resolve(dir, path), *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!full)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = util_read_file(full, KUBE_FILE_MAX, &text, &len);
	if (rc < 0) {
		al_error_wrap(rc, "kubeconfig %s", what);
		free(full);
		return rc;
	}
	if (strlen(text) != len || len == 0) {
		rc = al_error_set(AL_ERR_INVALID, "kubeconfig %s %s is empty or not PEM text", what, full);
		sodium_memzero(text, len);
		free(text);
		free(full);
		return rc;
	}
	free(full);
	*out = text;
	return AL_OK;
}

static int decode_base64(const char *b64, const char *what, char **out)
{
	size_t n = strlen(b64), bin_len = 0;
	char *bin;

	*out = NULL;
	if (!(bin = malloc(n / 4 * 3 + 4)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (sodium_base642bin((unsigned char *)bin, n / 4 * 3 + 3, b64, n, " \t\r\n", &bin_len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(bin);
		return al_error_set(AL_ERR_INVALID, "kubeconfig %s is not valid base64", what);
	}
	bin[bin_len] = '\0';
	if (bin_len == 0 || strlen(bin) != bin_len) {
		sodium_memzero(bin, bin_len);
		free(bin);
		return al_error_set(AL_ERR_INVALID, "kubeconfig %s does not decode to PEM text", what);
	}
	*out = bin;
	return AL_OK;
}

/* `data` (base64) wins over `file`, as in kubectl. */
static int load_pem(const json_t *obj, const char *data_key, const char *file_key, const char *dir,
		    const char *what, char **out)
{
	const json_t *data = json_object_get(obj, data_key), *file = json_object_get(obj, file_key);

	*out = NULL;
	if (data && !json_is_null(data)) {
		if (!json_is_string(data))
			return al_error_set(AL_ERR_INVALID, "kubeconfig %s: %s must be a string", what, data_key);
		return decode_base64(json_string_value(data), what, out);
	}
	if (file && !json_is_null(file)) {
		if (!json_is_string(file) || !json_string_length(file))
			return al_error_set(AL_ERR_INVALID, "kubeconfig %s: %s must be a file name", what, file_key);
		return read_pem_file(dir, json_string_value(file), what, out);
	}
	return AL_OK;
}

/* The entry {name: NAME, KEY: {...}} of a named list (contexts, clusters, users). */
static int find_named(const json_t *root, const char *list, const char *key, const char *name,
		      const char *file, const json_t **out)
{
	const json_t *arr = json_object_get(root, list), *e;
	size_t i;

	*out = NULL;
	if (arr && !json_is_array(arr) && !json_is_null(arr))
		return al_error_set(AL_ERR_INVALID, "kubeconfig %s: '%s' must be a list", file, list);
	json_array_foreach(arr, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && !strcmp(n, name)) {
			const json_t *v = json_object_get(e, key);
			if (!json_is_object(v))
				return al_error_set(AL_ERR_INVALID, "kubeconfig %s: %s '%s' has no '%s' mapping", file,
						    list, name, key);
			*out = v;
			return AL_OK;
		}
	}
	return al_error_set(AL_ERR_INVALID, "kubeconfig %s: no %s entry named '%s'", file, list, name);
}

static int opt_string(const json_t *obj, const char *key, const char *where, const char **out)
{
	const json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return AL_OK;
	if (!json_is_string(v))
		return al_error_set(AL_ERR_INVALID, "kubeconfig %s: %s must be a string", where, key);
	*out = json_string_value(v);
	return AL_OK;
}

static int set_server(struct kube_config *out, const char *server, const char *where)
{
	size_t n;

	if (!server || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)))
		return al_error_set(AL_ERR_INVALID, "%s: server must be an https:// (or http://) URL", where);
	for (const unsigned char *p = (const unsigned char *)server; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return al_error_set(AL_ERR_INVALID, "%s: server URL holds a space or control character", where);
	if (!(out->server = util_strdup(server)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	n = strlen(out->server);
	while (n > 0 && out->server[n - 1] == '/')
		out->server[--n] = '\0';
	return AL_OK;
}

static int from_kubeconfig(struct kube_config *out, const char *file)
{
	char *text = NULL, *dir = NULL, *slash;
	const char *ctx_name, *cluster_name, *user_name = NULL, *ns = NULL, *s;
	const json_t *ctx, *cluster, *user = NULL, *v;
	json_t *root = NULL;
	size_t len = 0;
	char where[512];
	int rc;

	if ((rc = util_read_file(file, KUBE_FILE_MAX, &text, &len)) < 0)
		return al_error_wrap(rc, "kubeconfig");
	rc = resource_parse(text, len, &root);
	sodium_memzero(text, len);
	free(text);
	if (rc < 0)
		return al_error_wrap(rc, "kubeconfig %s", file);
	if (!json_is_object(root)) {
		rc = al_error_set(AL_ERR_INVALID, "kubeconfig %s is not a mapping", file);
		goto out;
	}
	if (!(dir = util_strdup(file))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else {
		free(dir);
		dir = NULL; /* relative to the working directory */
	}

	ctx_name = json_string_value(json_object_get(root, "current-context"));
	if (!ctx_name || !ctx_name[0]) {
		rc = al_error_set(AL_ERR_INVALID,
				  "kubeconfig %s has no current-context: run `kubectl config use-context NAME`", file);
		goto out;
	}
	if ((rc = find_named(root, "contexts", "context", ctx_name, file, &ctx)) < 0)
		goto out;
	snprintf(where, sizeof(where), "%.300s context '%.150s'", file, ctx_name);
	cluster_name = json_string_value(json_object_get(ctx, "cluster"));
	if (!cluster_name || !cluster_name[0]) {
		rc = al_error_set(AL_ERR_INVALID, "kubeconfig %s names no cluster", where);
		goto out;
	}
	if ((rc = opt_string(ctx, "user", where, &user_name)) < 0 ||
	    (rc = opt_string(ctx, "namespace", where, &ns)) < 0)
		goto out;
	if ((rc = find_named(root, "clusters", "cluster", cluster_name, file, &cluster)) < 0)
		goto out;
	if (user_name && user_name[0] &&
	    (rc = find_named(root, "users", "user", user_name, file, &user)) < 0)
		goto out;

	snprintf(where, sizeof(where), "%.300s cluster '%.150s'", file, cluster_name);
	if ((rc = opt_string(cluster, "server", where, &s)) < 0 || (rc = set_server(out, s, where)) < 0)
		goto out;
	if ((rc = load_pem(cluster, "certificate-authority-data", "certificate-authority", dir, where,
			   &out->ca_pem)) < 0)
		goto out;
	v = json_object_get(cluster, "insecure-skip-tls-verify");
	if (v && !json_is_null(v) && !json_is_boolean(v)) {
		rc = al_error_set(AL_ERR_INVALID, "kubeconfig %s: insecure-skip-tls-verify must be true or false", where);
		goto out;
	}
	out->insecure_skip_tls_verify = json_is_true(v);

	if (user) {
		static const char *const refused[] = { "exec", "auth-provider", "username", "password" };
		const char *token = NULL, *token_file = NULL;

		snprintf(where, sizeof(where), "%.300s user '%.150s'", file, user_name);
		for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
			v = json_object_get(user, refused[i]);
			if (v && !json_is_null(v)) {
				rc = al_error_set(AL_ERR_INVALID,
						  "kubeconfig %s uses '%s' authentication, which airlock does not support: "
						  "use a token, tokenFile or client-certificate/client-key instead",
						  where, refused[i]);
				goto out;
			}
		}
		if ((rc = opt_string(user, "token", where, &token)) < 0 ||
		    (rc = opt_string(user, "tokenFile", where, &token_file)) < 0)
			goto out;
		if (token_file && token_file[0]) {
			if (!(out->token_file = resolve(dir, token_file))) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				goto out;
			}
			if ((rc = kube_read_token_file(out->token_file, &out->token)) < 0) {
				al_error_wrap(rc, "kubeconfig %s", where);
				goto out;
			}
		} else if (token && token[0]) {
			if (!token_ok(token)) {
				rc = al_error_set(AL_ERR_INVALID,
						  "kubeconfig %s: token holds characters other than printable ASCII", where);
				goto out;
			}
			if (!(out->token = util_strdup(token))) {
				rc = al_error_set(AL_ERR_NOMEM, "out of memory");
				goto out;
			}
		}
		if ((rc = load_pem(user, "client-certificate-data", "client-certificate", dir, where,
				   &out->client_cert_pem)) < 0 ||
		    (rc = load_pem(user, "client-key-data", "client-key", dir, where, &out->client_key_pem)) < 0)
			goto out;
		if (!out->client_cert_pem != !out->client_key_pem) {
			rc = al_error_set(AL_ERR_INVALID,
					  "kubeconfig %s: a client certificate needs its key and a key its certificate",
					  where);
			goto out;
		}
	}
	if (!(out->namespace = util_strdup(ns && ns[0] ? ns : "default"))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	rc = AL_OK;
out:
	free(dir);
	json_decref(root);
	return rc;
}

static int from_service_account(struct kube_config *out)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("AIRLOCK_SERVICEACCOUNT_DIR");
	char *path = NULL, *ns = NULL, server[512];
	size_t len = 0;
	int rc;

	if (!dir || !dir[0])
		dir = SA_DIR_DEFAULT;
	if (!port || !port[0])
		port = "443";
	if (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
		return al_error_set(AL_ERR_INVALID, "in-cluster config: KUBERNETES_SERVICE_PORT '%.16s' is not a port", port);
	if (strlen(host) > 255 || strpbrk(host, "/@?# "))
		return al_error_set(AL_ERR_INVALID, "in-cluster config: KUBERNETES_SERVICE_HOST is not a host name or address");
	/* an IPv6 address goes in brackets */
	snprintf(server, sizeof(server), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
	if ((rc = set_server(out, server, "in-cluster config")) < 0)
		return rc;

	if (!(out->token_file = util_path_join(dir, "token")))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if ((rc = kube_read_token_file(out->token_file, &out->token)) < 0)
		return al_error_wrap(rc, "in-cluster service account");

	if (!(path = util_path_join(dir, "ca.crt")))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = util_read_file(path, KUBE_FILE_MAX, &out->ca_pem, &len);
	if (rc == AL_ERR_NOT_FOUND) {
		rc = AL_OK; /* the system store then */
	} else if (rc == AL_OK && (len == 0 || strlen(out->ca_pem) != len)) {
		rc = al_error_set(AL_ERR_INVALID, "in-cluster service account: %s is empty or not PEM text", path);
	} else if (rc < 0) {
		al_error_wrap(rc, "in-cluster service account CA");
	}
	free(path);
	if (rc < 0)
		return rc;

	if (!(path = util_path_join(dir, "namespace")))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = util_read_file(path, 4096, &ns, &len);
	free(path);
	if (rc == AL_OK) {
		rtrim(ns);
		if (ns[0])
			out->namespace = ns;
		else
			free(ns);
	} else if (rc != AL_ERR_NOT_FOUND) {
		return al_error_wrap(rc, "in-cluster service account namespace");
	}
	if (!out->namespace && !(out->namespace = util_strdup("default")))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

int kube_config_load(struct kube_config *out, const char *path)
{
	const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	char *file = NULL;
	int rc;

	if (!out)
		return al_error_set(AL_ERR_INVALID, "kube_config_load: no output");
	memset(out, 0, sizeof(*out));
	if (path && path[0]) {
		file = util_strdup(path);
	} else if (env && env[0]) {
		/* KUBECONFIG is a ':'-separated list; its first file is used */
		if (env[0] == ':')
			return al_error_set(AL_ERR_INVALID, "KUBECONFIG starts with an empty entry: name a kubeconfig file");
		file = strndup(env, strcspn(env, ":"));
	} else if (home && home[0]) {
		if (!(file = util_path_join(home, ".kube/config")))
			return al_error_set(AL_ERR_NOMEM, "out of memory");
		if (!util_path_exists(file)) {
			free(file);
			file = NULL;
			if (!host || !host[0])
				return al_error_set(AL_ERR_NOT_FOUND,
						    "no Kubernetes configuration: pass a kubeconfig, set KUBECONFIG, "
						    "create ~/.kube/config or run inside a cluster");
			goto in_cluster;
		}
	} else if (host && host[0]) {
		goto in_cluster;
	} else {
		return al_error_set(AL_ERR_NOT_FOUND,
				    "no Kubernetes configuration: pass a kubeconfig, set KUBECONFIG or run inside a cluster");
	}
	if (!file)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	rc = from_kubeconfig(out, file);
	free(file);
	if (rc < 0)
		kube_config_free(out);
	return rc;

in_cluster:
	rc = from_service_account(out);
	if (rc < 0)
		kube_config_free(out);
	return rc;
}
