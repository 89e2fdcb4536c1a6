/* Tests for src/kube: configuration (kubeconfig and in-cluster), the line
 * splitter, watch event parsing, paths, back-off, and requests and watches
 * against fake API servers in-process (web/http_server for whole answers, a
 * raw socket server for slow streams). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "kube/kube.h"
#include "web/http_server.h"

/* ---- helpers ---- */

static char tmpdir[256];

static int setup_tmp(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/airlock-kube-test-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	unsetenv("AIRLOCK_SERVICEACCOUNT_DIR");
	return 0;
}

static int teardown_tmp(void **state)
{
	(void)state;
	util_remove_tree(tmpdir);
	return 0;
}

/* Writes tmpdir/name; returns the full path (free it). */
static char *write_tmp(const char *name, const char *text)
{
	char *path = util_path_join(tmpdir, name);
	char *slash;
	assert_non_null(path);
	slash = strrchr(path, '/');
	*slash = '\0';
	assert_int_equal(util_mkdir_p(path, 0700), AL_OK);
	*slash = '/';
	assert_int_equal(util_write_file_atomic(path, text, strlen(text), 0600), AL_OK);
	return path;
}

static char *b64(const char *text)
{
	size_t n = sodium_base64_encoded_len(strlen(text), sodium_base64_VARIANT_ORIGINAL);
	char *out = malloc(n);
	assert_non_null(out);
	sodium_bin2base64(out, n, (const unsigned char *)text, strlen(text), sodium_base64_VARIANT_ORIGINAL);
	return out;
}

static const char *const CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake-ca\n-----END CERTIFICATE-----\n";
static const char *const CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake-client\n-----END CERTIFICATE-----\n";
static const char *const KEY_PEM = "-----BEGIN PRIVATE KEY-----\nMIIEfake-key\n-----END PRIVATE KEY-----\n";

static int load_text(const char *name, const char *text, struct kube_config *cfg)
{
	char *path = write_tmp(name, text);
	int rc = kube_config_load(cfg, path);
	free(path);
	return rc;
}

/* ---- kubeconfig ---- */

static void test_kubeconfig_token(void **state)
{
	struct kube_config cfg;
	const char *yaml =
		"apiVersion: v1\n"
		"kind: Config\n"
		"current-context: dev\n"
		"contexts:\n"
		"- name: prod\n"
		"  context: {cluster: prod, user: admin}\n"
		"- name: dev\n"
		"  context:\n"
		"    cluster: dev\n"
		"    user: dev-user\n"
		"    namespace: airlock\n"
		"clusters:\n"
		"- name: prod\n"
		"  cluster: {server: 'https://prod.example:6443'}\n"
		"- name: dev\n"
		"  cluster:\n"
		"    server: https://dev.example:6443/\n"
		"    insecure-skip-tls-verify: true\n"
		"users:\n"
		"- name: admin\n"
		"  user: {exec: {command: aws}}\n"
		"- name: dev-user\n"
		"  user:\n"
		"    token: abc.def-123\n";
	(void)state;

	assert_int_equal(load_text("config", yaml, &cfg), AL_OK);
	assert_string_equal(cfg.server, "https://dev.example:6443");
	assert_string_equal(cfg.token, "abc.def-123");
	assert_null(cfg.token_file);
	assert_string_equal(cfg.namespace, "airlock");
	assert_int_equal(cfg.insecure_skip_tls_verify, 1);
	assert_null(cfg.ca_pem);
	assert_null(cfg.client_cert_pem);
	assert_null(cfg.client_key_pem);
	kube_config_free(&cfg);
	kube_config_free(&cfg); /* twice is harmless */
}

static void test_kubeconfig_files_relative(void **state)
{
	struct kube_config cfg;
	char *expect_tok;
	const char *yaml =
		"current-context: c\n"
		"contexts: [{name: c, context: {cluster: k, user: u}}]\n"
		"clusters: [{name: k, cluster: {server: 'https://k:443', certificate-authority: pki/ca.pem}}]\n"
		"users:\n"
		"- name: u\n"
		"  user:\n"
		"    tokenFile: secrets/token\n"
		"    client-certificate: pki/client.crt\n"
		"    client-key: pki/client.key\n";
	(void)state;

	free(write_tmp("kc/pki/ca.pem", CA_PEM));
	free(write_tmp("kc/pki/client.crt", CERT_PEM));
	free(write_tmp("kc/pki/client.key", KEY_PEM));
	free(write_tmp("kc/secrets/token", "file-token-1\n"));
	assert_int_equal(load_text("kc/config", yaml, &cfg), AL_OK);
	assert_string_equal(cfg.ca_pem, CA_PEM);
	assert_string_equal(cfg.client_cert_pem, CERT_PEM);
	assert_string_equal(cfg.client_key_pem, KEY_PEM);
	assert_string_equal(cfg.token, "file-token-1"); /* newline trimmed */
	expect_tok = util_path_join(tmpdir, "kc/secrets/token");
	assert_string_equal(cfg.token_file, expect_tok);
	assert_string_equal(cfg.namespace, "default");
	assert_int_equal(cfg.insecure_skip_tls_verify, 0);
	free(expect_tok);
	kube_config_free(&cfg);

	/* a missing referenced file names the file */
	{
		char *p = util_path_join(tmpdir, "kc/pki/ca.pem");
		assert_int_equal(unlink(p), 0);
		assert_int_not_equal(load_text("kc/config", yaml, &cfg), AL_OK);
		assert_non_null(strstr(al_error_message(), "ca.pem"));
		assert_null(cfg.server); /* nothing half-loaded */
		free(p);
	}
}

static void test_kubeconfig_data_fields(void **state)
{
	struct kube_config cfg;
	char *ca = b64(CA_PEM), *cert = b64(CERT_PEM), *key = b64(KEY_PEM);
	struct buf y;
	(void)state;

	buf_init(&y, 0);
	/* -data wins over a file name (that does not even exist) */
	assert_int_equal(buf_appendf(&y,
				     "current-context: c\n"
				     "contexts: [{name: c, context: {cluster: k, user: u, namespace: ns1}}]\n"
				     "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:1', certificate-authority-data: %s, certificate-authority: /nope}}]\n"
				     "users: [{name: u, user: {client-certificate-data: %s, client-key-data: %s}}]\n",
				     ca, cert, key),
			 AL_OK);
	assert_int_equal(load_text("data.yaml", y.ptr, &cfg), AL_OK);
	assert_string_equal(cfg.server, "http://127.0.0.1:1");
	assert_string_equal(cfg.ca_pem, CA_PEM);
	assert_string_equal(cfg.client_cert_pem, CERT_PEM);
	assert_string_equal(cfg.client_key_pem, KEY_PEM);
	assert_null(cfg.token);
	assert_string_equal(cfg.namespace, "ns1");
	kube_config_free(&cfg);

	/* base64 that is not */
	buf_reset(&y);
	assert_int_equal(buf_appendf(&y,
				     "current-context: c\n"
				     "contexts: [{name: c, context: {cluster: k}}]\n"
				     "clusters: [{name: k, cluster: {server: 'https://k', certificate-authority-data: '!!notbase64'}}]\n"),
			 AL_OK);
	assert_int_equal(load_text("bad64.yaml", y.ptr, &cfg), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "base64"));
	buf_free(&y);
	free(ca);
	free(cert);
	free(key);
}

static void expect_invalid(const char *yaml, const char *needle)
{
	struct kube_config cfg;
	int rc = load_text("bad.yaml", yaml, &cfg);
	if (rc != AL_ERR_INVALID || !strstr(al_error_message(), needle))
		fail_msg("expected invalid with '%s', got %d: %s", needle, rc, al_error_message());
	assert_null(cfg.server);
	assert_null(cfg.token);
}

static void test_kubeconfig_errors(void **state)
{
	struct kube_config cfg;
	char *missing;
	(void)state;

	expect_invalid("clusters: []\n", "current-context");
	expect_invalid("current-context: x\ncontexts: []\n", "no contexts entry named 'x'");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n",
		       "no clusters entry named 'k'");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
		       "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
		       "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: kubelogin}}}]\n",
		       "'exec'");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
		       "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
		       "users: [{name: u, user: {auth-provider: {name: gcp}}}]\n",
		       "'auth-provider'");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
		       "clusters: [{name: k, cluster: {server: 'ftp://k'}}]\n",
		       "https://");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
		       "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
		       "users: [{name: u, user: {client-certificate-data: QUJD}}]\n",
		       "needs its key");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
		       "clusters: [{name: k, cluster: {server: 'https://k', insecure-skip-tls-verify: 'yes'}}]\n",
		       "insecure-skip-tls-verify");
	expect_invalid("- just\n- a list\n", "not a mapping");
	expect_invalid("current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
		       "clusters: [{name: k, cluster: {server: 'https://k'}}]\n"
		       "users: [{name: u, user: {token: \"a b\"}}]\n",
		       "printable ASCII");

	missing = util_path_join(tmpdir, "does-not-exist");
	assert_int_equal(kube_config_load(&cfg, missing), AL_ERR_NOT_FOUND);
	assert_non_null(strstr(al_error_message(), "does-not-exist"));
	free(missing);
}

static void test_kubeconfig_search_order(void **state)
{
	struct kube_config cfg;
	char *a, *home, *env;
	const char *yaml_a = "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
			     "clusters: [{name: k, cluster: {server: 'https://a.example'}}]\n";
	const char *yaml_h = "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
			     "clusters: [{name: k, cluster: {server: 'https://home.example'}}]\n";
	char *old_home = util_strdup(getenv("HOME"));
	(void)state;

	a = write_tmp("a.yaml", yaml_a);
	free(write_tmp("home/.kube/config", yaml_h));
	home = util_path_join(tmpdir, "home");
	setenv("HOME", home, 1);

	/* HOME's config when nothing else */
	assert_int_equal(kube_config_load(&cfg, NULL), AL_OK);
	assert_string_equal(cfg.server, "https://home.example");
	kube_config_free(&cfg);

	/* KUBECONFIG's first entry wins over HOME */
	assert_int_equal(asprintf(&env, "%s:/nonexistent/other", a) > 0, 1);
	setenv("KUBECONFIG", env, 1);
	assert_int_equal(kube_config_load(&cfg, NULL), AL_OK);
	assert_string_equal(cfg.server, "https://a.example");
	kube_config_free(&cfg);

	/* an explicit path wins over KUBECONFIG */
	setenv("KUBECONFIG", "/nonexistent/kubeconfig", 1);
	assert_int_equal(kube_config_load(&cfg, a), AL_OK);
	assert_string_equal(cfg.server, "https://a.example");
	kube_config_free(&cfg);
	assert_int_equal(kube_config_load(&cfg, ""), AL_ERR_NOT_FOUND); /* "" = not given */
	unsetenv("KUBECONFIG");

	/* nothing at all */
	setenv("HOME", tmpdir, 1);
	assert_int_equal(kube_config_load(&cfg, NULL), AL_ERR_NOT_FOUND);
	assert_non_null(strstr(al_error_message(), "no Kubernetes configuration"));

	if (old_home)
		setenv("HOME", old_home, 1);
	free(old_home);
	free(env);
	free(home);
	free(a);
}

static void test_in_cluster(void **state)
{
	struct kube_config cfg;
	char *sa, *tok;
	char *old_home = util_strdup(getenv("HOME"));
	(void)state;

	free(write_tmp("sa/token", "sa-token-xyz\n"));
	free(write_tmp("sa/ca.crt", CA_PEM));
	free(write_tmp("sa/namespace", "airlock-system"));
	sa = util_path_join(tmpdir, "sa");
	setenv("HOME", tmpdir, 1); /* no ~/.kube/config there */
	setenv("AIRLOCK_SERVICEACCOUNT_DIR", sa, 1);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);

	assert_int_equal(kube_config_load(&cfg, NULL), AL_OK);
	assert_string_equal(cfg.server, "https://10.96.0.1:6443");
	assert_string_equal(cfg.token, "sa-token-xyz");
	tok = util_path_join(sa, "token");
	assert_string_equal(cfg.token_file, tok);
	assert_string_equal(cfg.ca_pem, CA_PEM);
	assert_string_equal(cfg.namespace, "airlock-system");
	kube_config_free(&cfg);

	/* IPv6 in brackets; default port; no namespace file -> default */
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	unsetenv("KUBERNETES_SERVICE_PORT");
	free(write_tmp("sa/namespace", "\n"));
	assert_int_equal(kube_config_load(&cfg, NULL), AL_OK);
	assert_string_equal(cfg.server, "https://[fd00::1]:443");
	assert_string_equal(cfg.namespace, "default");
	kube_config_free(&cfg);

	/* no token: a clear error */
	assert_int_equal(unlink(tok), 0);
	assert_int_equal(kube_config_load(&cfg, NULL), AL_ERR_NOT_FOUND);
	assert_non_null(strstr(al_error_message(), "token"));
	assert_null(cfg.server);

	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("AIRLOCK_SERVICEACCOUNT_DIR");
	if (old_home)
		setenv("HOME", old_home, 1);
	free(old_home);
	free(tok);
	free(sa);
}

/* ---- line splitter ---- */

struct lines {
	struct buf all; /* each line followed by '|' */
	int count;
	int stop_after; /* > 0: return 1 at that line */
};

static int collect_line(void *userdata, const char *line, size_t len)
{
	struct lines *l = userdata;
	assert_int_equal(buf_append(&l->all, line, len), AL_OK);
	assert_int_equal(buf_appendc(&l->all, '|'), AL_OK);
	l->count++;
	return l->stop_after && l->count == l->stop_after ? 1 : 0;
}

static const char SAMPLE[] =
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
	"{\"type\":\"MODIFIED\",\"object\":{}}\r\n"
	"\n"
	"\r\n"
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"7\"}}}\n"
	"tail-without-newline";
static const char SAMPLE_LINES[] =
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}|"
	"{\"type\":\"MODIFIED\",\"object\":{}}|"
	"||"
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"7\"}}}|";

static void test_splitter_every_offset(void **state)
{
	size_t n = sizeof(SAMPLE) - 1;
	(void)state;

	/* two chunks split at every offset, and three chunks at every pair */
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j += (i % 7 == 0 ? 1 : 13)) {
			struct kube_line_splitter *s;
			struct lines l = { .count = 0 };
			buf_init(&l.all, 0);
			assert_int_equal(kube_line_splitter_new(&s, 100, collect_line, &l), AL_OK);
			assert_int_equal(kube_line_splitter_feed(s, SAMPLE, i), AL_OK);
			assert_int_equal(kube_line_splitter_feed(s, SAMPLE + i, j - i), AL_OK);
			assert_int_equal(kube_line_splitter_feed(s, SAMPLE + j, n - j), AL_OK);
			assert_string_equal(buf_cstr(&l.all), SAMPLE_LINES);
			assert_int_equal(kube_line_splitter_flush(s), AL_OK);
			assert_int_equal(l.count, 6);
			assert_int_equal(kube_line_splitter_flush(s), AL_OK); /* nothing left */
			assert_int_equal(l.count, 6);
			kube_line_splitter_free(s);
			buf_free(&l.all);
		}
	}
	/* byte by byte */
	{
		struct kube_line_splitter *s;
		struct lines l = { .count = 0 };
		buf_init(&l.all, 0);
		assert_int_equal(kube_line_splitter_new(&s, 100, collect_line, &l), AL_OK);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(kube_line_splitter_feed(s, SAMPLE + i, 1), AL_OK);
		assert_string_equal(buf_cstr(&l.all), SAMPLE_LINES);
		kube_line_splitter_free(s);
		buf_free(&l.all);
	}
}

static void test_splitter_limits(void **state)
{
	struct kube_line_splitter *s;
	struct lines l = { .count = 0 };
	(void)state;

	buf_init(&l.all, 0);
	/* exactly max_line is fine, with \n or \r\n, whole or split */
	assert_int_equal(kube_line_splitter_new(&s, 10, collect_line, &l), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "0123456789\n", 11), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "01234", 5), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "56789\r", 6), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "\n", 1), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "0123456789\r\n", 12), AL_OK);
	assert_string_equal(buf_cstr(&l.all), "0123456789|0123456789|0123456789|");
	/* one over, in one chunk: refused, and the error sticks */
	assert_int_equal(kube_line_splitter_feed(s, "0123456789A\n", 12), AL_ERR_TOO_LARGE);
	assert_non_null(strstr(al_error_message(), "longer than 10 bytes"));
	assert_int_equal(kube_line_splitter_feed(s, "ok\n", 3), AL_ERR_TOO_LARGE);
	assert_int_equal(kube_line_splitter_flush(s), AL_ERR_TOO_LARGE);
	kube_line_splitter_free(s);

	/* one over, across chunks without a newline yet: refused before buffering more */
	assert_int_equal(kube_line_splitter_new(&s, 10, collect_line, &l), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "012345", 6), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "6789A", 5), AL_OK); /* an 11th byte could be a '\r' */
	assert_int_equal(kube_line_splitter_feed(s, "B", 1), AL_ERR_TOO_LARGE);
	kube_line_splitter_free(s);

	/* the 11th byte that is not '\r' is caught at the newline */
	assert_int_equal(kube_line_splitter_new(&s, 10, collect_line, &l), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "0123456789A", 11), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "\n", 1), AL_ERR_TOO_LARGE);
	kube_line_splitter_free(s);

	/* a huge stream without newlines stays bounded */
	assert_int_equal(kube_line_splitter_new(&s, 1000, collect_line, &l), AL_OK);
	{
		char chunk[300];
		int rc = AL_OK, i;
		memset(chunk, 'x', sizeof(chunk));
		for (i = 0; i < 100 && rc == AL_OK; i++)
			rc = kube_line_splitter_feed(s, chunk, sizeof(chunk));
		assert_int_equal(rc, AL_ERR_TOO_LARGE);
		assert_int_equal(i, 4);
	}
	kube_line_splitter_free(s);

	/* a callback's non-zero return stops the feed and is returned */
	buf_reset(&l.all);
	l.count = 0;
	l.stop_after = 2;
	assert_int_equal(kube_line_splitter_new(&s, 10, collect_line, &l), AL_OK);
	assert_int_equal(kube_line_splitter_feed(s, "a\nb\nc\n", 6), 1);
	assert_int_equal(l.count, 2);
	assert_int_equal(kube_line_splitter_feed(s, "d\n", 2), 1);
	assert_int_equal(l.count, 2);
	kube_line_splitter_free(s);
	kube_line_splitter_free(NULL);

	assert_int_equal(kube_line_splitter_new(&s, 0, collect_line, &l), AL_ERR_INVALID);
	buf_free(&l.all);
}

/* ---- event parsing ---- */

static void expect_event(const char *line, const char *type, const char *name)
{
	char *t = NULL;
	json_t *o = NULL;
	assert_int_equal(kube_watch_event_parse(line, strlen(line), &t, &o), AL_OK);
	assert_string_equal(t, type);
	assert_true(json_is_object(o));
	if (name)
		assert_string_equal(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")), name);
	free(t);
	json_decref(o);
}

static void expect_bad_event(const char *line)
{
	char *t = (char *)"x";
	json_t *o = (json_t *)1;
	assert_int_equal(kube_watch_event_parse(line, strlen(line), &t, &o), AL_ERR_INVALID);
	assert_null(t);
	assert_null(o);
}

static void test_event_parse(void **state)
{
	char *t = NULL;
	json_t *o = NULL;
	(void)state;

	expect_event("{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}}", "ADDED", "a");
	expect_event("{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}", "MODIFIED", "b");
	expect_event("{\"object\":{\"metadata\":{\"name\":\"c\"}},\"type\":\"DELETED\"}", "DELETED", "c");
	expect_event("{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"resourceVersion\":\"12345\"}}}",
		     "BOOKMARK", NULL);
	{
		const char *err = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
				  "\"message\":\"too old resource version: 1 (2)\",\"reason\":\"Expired\",\"code\":410}}";
		assert_int_equal(kube_watch_event_parse(err, strlen(err), &t, &o), AL_OK);
		assert_string_equal(t, "ERROR");
		assert_int_equal(json_integer_value(json_object_get(o, "code")), 410);
		free(t);
		json_decref(o);
	}
	/* the length is honoured: trailing bytes past len are not read */
	{
		const char *l = "{\"type\":\"ADDED\",\"object\":{}}GARBAGE";
		assert_int_equal(kube_watch_event_parse(l, strlen(l) - 7, &t, &o), AL_OK);
		free(t);
		json_decref(o);
	}
	expect_bad_event("");
	expect_bad_event("not json");
	expect_bad_event("[1,2]");
	expect_bad_event("{\"type\":\"ADDED\"}");
	expect_bad_event("{\"type\":\"ADDED\",\"object\":[]}");
	expect_bad_event("{\"type\":\"ADDED\",\"object\":\"x\"}");
	expect_bad_event("{\"type\":\"SYNC\",\"object\":{}}");
	expect_bad_event("{\"type\":1,\"object\":{}}");
	expect_bad_event("{\"type\":\"ADDED\",\"type\":\"DELETED\",\"object\":{}}");
	expect_bad_event("{\"type\":\"ADDED\",\"object\":{}} {}");
}

/* ---- paths and back-off ---- */

static void expect_path(const char *gv, const char *ns, const char *res, const char *name, const char *sub,
			const char *want)
{
	char *p = kube_path(gv, ns, res, name, sub);
	if (!want) {
		if (p)
			fail_msg("expected refusal, got %s", p);
		assert_int_equal(al_error_message()[0] != '\0', 1);
		return;
	}
	assert_non_null(p);
	assert_string_equal(p, want);
	free(p);
}

static void test_path(void **state)
{
	(void)state;
	expect_path("xlscsde.nhs.uk/v1", "ns", "analyticsworkspacedatasources", "x", "status",
		    "/apis/xlscsde.nhs.uk/v1/namespaces/ns/analyticsworkspacedatasources/x/status");
	expect_path("v1", "ns", "configmaps", "cm", NULL, "/api/v1/namespaces/ns/configmaps/cm");
	expect_path("v1", NULL, "namespaces", NULL, NULL, "/api/v1/namespaces");
	expect_path("v1", NULL, "namespaces", "airlock", NULL, "/api/v1/namespaces/airlock");
	expect_path("batch/v1", "ns", "jobs", NULL, NULL, "/apis/batch/v1/namespaces/ns/jobs");
	expect_path("apps/v1", "ns", "deployments", "up", "scale", "/apis/apps/v1/namespaces/ns/deployments/up/scale");
	expect_path("coordination.k8s.io/v1", "ns", "leases", "airlock-operator", NULL,
		    "/apis/coordination.k8s.io/v1/namespaces/ns/leases/airlock-operator");
	expect_path("rbac.authorization.k8s.io/v1", NULL, "clusterroles", "system:basic user", NULL,
		    "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic%20user");
	expect_path("v1", "ns", "configmaps", "a/b", NULL, NULL);
	expect_path("v1", "ns", "configmaps", "..", NULL, NULL);
	expect_path("v1", "ns", "configmaps", ".", NULL, NULL);
	expect_path("v1", "ns", "configmaps", "", NULL, NULL);
	expect_path("v1", "../x", "configmaps", "a", NULL, NULL);
	expect_path("v1", "NS", "configmaps", "a", NULL, NULL);
	expect_path("v1", "ns", "config/maps", "a", NULL, NULL);
	expect_path("v1", "ns", "configmaps", NULL, "status", NULL);
	expect_path("v1", "ns", "configmaps", "a", "st/atus", NULL);
	expect_path("a/b/c", "ns", "configmaps", "a", NULL, NULL);
	expect_path("../v1", "ns", "configmaps", "a", NULL, NULL);
	expect_path("", "ns", "configmaps", "a", NULL, NULL);
	expect_path(NULL, "ns", "configmaps", "a", NULL, NULL);
	expect_path("v1", "ns", NULL, "a", NULL, NULL);
}

static void test_backoff(void **state)
{
	int max_seen[8] = { 0 };
	(void)state;

	for (int attempt = 0; attempt < 8; attempt++) {
		long bound = 100L << attempt;
		if (bound > 10000)
			bound = 10000;
		for (int i = 0; i < 2000; i++) {
			int d = kube_backoff_ms(attempt, 100, 10000);
			assert_true(d >= 0 && d <= bound);
			if (d > max_seen[attempt])
				max_seen[attempt] = d;
		}
		/* full jitter: the whole range is used */
		assert_true(max_seen[attempt] > bound * 9 / 10);
	}
	for (int i = 0; i < 1000; i++) {
		int d = kube_backoff_ms(1000, 100, 10000); /* no overflow */
		assert_true(d >= 0 && d <= 10000);
		d = kube_backoff_ms(INT32_MAX, 100, 10000);
		assert_true(d >= 0 && d <= 10000);
		d = kube_backoff_ms(-5, 100, 10000);
		assert_true(d >= 0 && d <= 100);
	}
	assert_int_equal(kube_backoff_ms(3, 0, 100), 0);
	assert_int_equal(kube_backoff_ms(3, 100, 0), 0);
	assert_true(kube_backoff_ms(0, 500, 200) <= 200);
}

/* ---- a fake API server (whole answers) ---- */

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int calls;
	int fail_first; /* /flaky and /status/429: answer badly this many times */
	char auth[256];
	char method[16];
	char content_type[128];
	char body[1024];
	char query[1024];
} fake;

static json_t *status_obj(int code, const char *reason, const char *message)
{
	return json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status", "apiVersion", "v1", "metadata",
			 "status", "Failure", "message", message, "reason", reason, "code", code);
}

/* A long text answer (several libcurl writes): byte i is 'a' + i % 26,
 * except a newline every 100 bytes. Filled by setup_fake. */
static char big_text[300 * 1024 + 7];

static char big_byte(size_t i)
{
	return i % 100 == 99 ? '\n' : (char)('a' + i % 26);
}

static const char WATCH_BODY[] =
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"AnalyticsWorkspaceDataSource\",\"metadata\":{\"name\":\"ds1\",\"resourceVersion\":\"11\"}}}\n"
	"{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"ds1\",\"resourceVersion\":\"12\"}}}\r\n"
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"13\"}}}\n"
	"\n"
	"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"ds1\",\"resourceVersion\":\"14\"}}}\n";

static void fake_handler(void *userdata, const struct http_request *req, struct http_response *resp)
{
	const char *auth = http_request_header(req, "Authorization");
	const char *ct = http_request_header(req, "Content-Type");
	const char *p = req->path;
	int calls;
	(void)userdata;

	pthread_mutex_lock(&fake_lock);
	calls = ++fake.calls;
	snprintf(fake.auth, sizeof(fake.auth), "%s", auth ? auth : "");
	snprintf(fake.method, sizeof(fake.method), "%s", req->method);
	snprintf(fake.content_type, sizeof(fake.content_type), "%s", ct ? ct : "");
	snprintf(fake.body, sizeof(fake.body), "%s", req->body);
	{
		const char *keys[] = { "watch", "allowWatchBookmarks", "resourceVersion", "timeoutSeconds", "labelSelector" };
		struct buf q;
		buf_init(&q, sizeof(fake.query) - 1);
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			const char *v = http_request_query(req, keys[i]);
			if (v)
				(void)buf_appendf(&q, "%s=%s;", keys[i], v);
		}
		snprintf(fake.query, sizeof(fake.query), "%s", buf_cstr(&q));
		buf_free(&q);
	}
	pthread_mutex_unlock(&fake_lock);

	if (!strcmp(p, "/api/v1/namespaces") && !strcmp(req->method, "GET")) {
		http_response_json(resp, 200,
				   json_pack("{s:s, s:[{s:{s:s}}, {s:{s:s}}]}", "kind", "NamespaceList", "items", "metadata",
					     "name", "default", "metadata", "name", "airlock"));
	} else if (!strcmp(p, "/api/v1/namespaces/ns/configmaps") && !strcmp(req->method, "POST")) {
		json_error_t e;
		json_t *o = json_loads(req->body, 0, &e);
		if (!o)
			http_response_json(resp, 400, status_obj(400, "BadRequest", "body is not JSON"));
		else
			http_response_json(resp, 201, o);
	} else if (!strcmp(p, "/text/log")) {
		http_response_text(resp, 200, "line 1\nline 2\nAIRLOCK-RESULT {\"ok\":true}\n");
	} else if (!strcmp(p, "/text/big")) {
		http_response_bytes(resp, 200, "text/plain", big_text, sizeof(big_text));
	} else if (!strcmp(p, "/text/none")) {
		http_response_bytes(resp, 204, "text/plain", "", 0);
	} else if (!strcmp(p, "/echo")) {
		http_response_json(resp, 200, json_pack("{s:s}", "method", req->method));
	} else if (!strcmp(p, "/empty")) {
		http_response_bytes(resp, 200, "application/json", "", 0);
	} else if (!strcmp(p, "/html")) {
		http_response_bytes(resp, 200, "text/html", "<html>", 6);
	} else if (!strcmp(p, "/redirect")) {
		http_response_bytes(resp, 302, "text/plain", "", 0);
		http_response_header(resp, "Location", "http://elsewhere/");
	} else if (!strcmp(p, "/status/400")) {
		http_response_json(resp, 400, status_obj(400, "BadRequest", "bad thing"));
	} else if (!strcmp(p, "/status/401")) {
		http_response_json(resp, 401, status_obj(401, "Unauthorized", "Unauthorized"));
	} else if (!strcmp(p, "/status/403")) {
		http_response_json(resp, 403, status_obj(403, "Forbidden", "configmaps is forbidden: User cannot list"));
	} else if (!strcmp(p, "/status/404")) {
		http_response_json(resp, 404, status_obj(404, "NotFound", "configmaps \"x\" not found"));
	} else if (!strcmp(p, "/status/409exists")) {
		http_response_json(resp, 409, status_obj(409, "AlreadyExists", "configmaps \"x\" already exists"));
	} else if (!strcmp(p, "/status/409conflict")) {
		http_response_json(resp, 409,
				   status_obj(409, "Conflict", "Operation cannot be fulfilled: the object has been modified"));
	} else if (!strcmp(p, "/status/410")) {
		http_response_json(resp, 410, status_obj(410, "Expired", "too old resource version"));
	} else if (!strcmp(p, "/status/413")) {
		http_response_json(resp, 413, status_obj(413, "RequestEntityTooLarge", "request is too large"));
	} else if (!strcmp(p, "/status/422")) {
		http_response_json(resp, 422, status_obj(422, "Invalid", "spec.type: Unsupported value"));
	} else if (!strcmp(p, "/status/500")) {
		http_response_json(resp, 500, status_obj(500, "InternalError", "etcdserver: request timed out"));
	} else if (!strcmp(p, "/status/503-plain")) {
		http_response_text(resp, 503, "upstream down");
	} else if (!strcmp(p, "/status/429")) {
		if (calls <= fake.fail_first) {
			http_response_json(resp, 429, status_obj(429, "TooManyRequests", "storage is (re)initializing"));
			http_response_header(resp, "Retry-After", "1");
		} else {
			http_response_json(resp, 200, json_pack("{s:s}", "ok", "after 429"));
		}
	} else if (!strcmp(p, "/status/429-details")) {
		json_t *st = status_obj(429, "TooManyRequests", "slow down");
		json_object_set_new(st, "details", json_pack("{s:i}", "retryAfterSeconds", 30));
		http_response_json(resp, 429, st);
	} else if (!strcmp(p, "/flaky")) {
		if (calls <= fake.fail_first)
			http_response_json(resp, 503, status_obj(503, "ServiceUnavailable", "try later"));
		else
			http_response_json(resp, 200, json_pack("{s:i}", "calls", calls));
	} else if (!strcmp(p, "/apis/xlscsde.nhs.uk/v1/namespaces/ns/analyticsworkspacedatasources")) {
		http_response_bytes(resp, 200, "application/json", WATCH_BODY, sizeof(WATCH_BODY) - 1);
	} else if (!strcmp(p, "/watch/gone-event")) {
		const char *b = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
				"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
				"\"status\":\"Failure\",\"message\":\"too old resource version: 5 (99)\",\"reason\":\"Expired\",\"code\":410}}\n"
				"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"never\"}}}\n";
		http_response_bytes(resp, 200, "application/json", b, strlen(b));
	} else if (!strcmp(p, "/watch/error-event")) {
		const char *b = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"message\":\"internal error\",\"code\":500}}\n";
		http_response_bytes(resp, 200, "application/json", b, strlen(b));
	} else if (!strcmp(p, "/watch/garbage")) {
		const char *b = "{\"type\":\"ADDED\",\"object\":{}}\nthis is not json\n";
		http_response_bytes(resp, 200, "application/json", b, strlen(b));
	} else if (!strcmp(p, "/watch/no-newline")) {
		const char *b = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"last\"}}}";
		http_response_bytes(resp, 200, "application/json", b, strlen(b));
	} else if (!strcmp(p, "/watch/gone-http")) {
		http_response_json(resp, 410, status_obj(410, "Expired", "too old resource version: 1 (50)"));
	} else if (!strcmp(p, "/watch/forbidden")) {
		http_response_json(resp, 403, status_obj(403, "Forbidden", "cannot watch"));
	} else {
		http_response_json(resp, 404, status_obj(404, "NotFound", "the server could not find the requested resource"));
	}
}

struct fixture {
	struct http_server *srv;
	struct kube_client *kc;
	char server[64];
};

static int setup_fake(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct kube_config cfg = { 0 };

	assert_non_null(f);
	setup_tmp(state);
	memset(&fake, 0, sizeof(fake));
	for (size_t i = 0; i < sizeof(big_text); i++)
		big_text[i] = big_byte(i);
	assert_int_equal(http_server_start(&f->srv, "127.0.0.1", 0, 0, fake_handler, NULL), AL_OK);
	snprintf(f->server, sizeof(f->server), "http://127.0.0.1:%u", (unsigned)http_server_port(f->srv));
	cfg.server = f->server;
	cfg.token = (char *)"secret-token-123";
	cfg.namespace = (char *)"ns";
	assert_int_equal(kube_client_new(&f->kc, &cfg), AL_OK);
	*state = f;
	return 0;
}

static int teardown_fake(void **state)
{
	struct fixture *f = *state;
	kube_client_free(f->kc);
	http_server_stop(f->srv);
	free(f);
	teardown_tmp(state);
	return 0;
}

static void test_request_basics(void **state)
{
	struct fixture *f = *state;
	json_t *out = NULL, *body;
	long status = 0;

	assert_string_equal(kube_client_namespace(f->kc), "ns");
	assert_int_equal(kube_request(f->kc, "GET", "/api/v1/namespaces", NULL, NULL, &status, &out), AL_OK);
	assert_int_equal(status, 200);
	assert_int_equal(json_array_size(json_object_get(out, "items")), 2);
	assert_string_equal(fake.auth, "Bearer secret-token-123");
	assert_string_equal(fake.method, "GET");
	json_decref(out);

	body = json_pack("{s:s, s:{s:s}, s:{s:s}}", "kind", "ConfigMap", "metadata", "name", "cm", "data", "k", "v");
	assert_int_equal(kube_request(f->kc, "POST", "/api/v1/namespaces/ns/configmaps", body, NULL, &status, &out), AL_OK);
	assert_int_equal(status, 201);
	assert_true(json_equal(out, body));
	assert_string_equal(fake.content_type, "application/json");
	json_decref(out);

	assert_int_equal(kube_request(f->kc, "PATCH", "/echo", body, "application/merge-patch+json", NULL, &out), AL_OK);
	assert_string_equal(fake.method, "PATCH");
	assert_string_equal(fake.content_type, "application/merge-patch+json");
	assert_non_null(strstr(fake.body, "\"name\":\"cm\""));
	json_decref(out);
	json_decref(body);

	assert_int_equal(kube_request(f->kc, "DELETE", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.method, "DELETE");
	assert_int_equal(kube_request(f->kc, "PUT", "/echo", NULL, NULL, NULL, &out), AL_OK);
	assert_string_equal(json_string_value(json_object_get(out, "method")), "PUT");
	json_decref(out);

	/* empty 2xx body: OK and no JSON; non-JSON 2xx: an IO error */
	out = (json_t *)1;
	assert_int_equal(kube_request(f->kc, "GET", "/empty", NULL, NULL, &status, &out), AL_OK);
	assert_null(out);
	assert_int_equal(kube_request(f->kc, "GET", "/html", NULL, NULL, &status, &out), AL_ERR_IO);
	assert_null(out);
	assert_int_equal(kube_request(f->kc, "GET", "/redirect", NULL, NULL, &status, NULL), AL_ERR_IO);
	assert_int_equal(status, 302);
	assert_non_null(strstr(al_error_message(), "redirect"));

	/* bad arguments never reach the server */
	fake.calls = 0;
	assert_int_equal(kube_request(f->kc, "get", "/echo", NULL, NULL, NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request(f->kc, "GET", "echo", NULL, NULL, NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request(f->kc, "GET", "/a b", NULL, NULL, NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request(f->kc, "GET", "/a\r\nX: y", NULL, NULL, NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request(f->kc, "POST", "/echo", json_true(), "a\r\nX: y", NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request(NULL, "GET", "/echo", NULL, NULL, NULL, NULL), AL_ERR_INVALID);
	assert_int_equal(fake.calls, 0);
}

/* kube_request_text: text answers (pod logs) with a cap, the tail kept or a
 * longer answer refused, errors mapped as kube_request's, counted as GETs. */
static void test_request_text(void **state)
{
	struct fixture *f = *state;
	unsigned long long before[KUBE_VERB_N], after[KUBE_VERB_N];
	char *out = NULL;
	size_t len = 0;

	kube_client_request_counts(f->kc, before);
	assert_int_equal(kube_request_text(f->kc, "/text/log", 1024, 0, 0, &out, &len), AL_OK);
	assert_string_equal(out, "line 1\nline 2\nAIRLOCK-RESULT {\"ok\":true}\n");
	assert_int_equal(len, strlen(out));
	assert_string_equal(fake.method, "GET");
	assert_string_equal(fake.auth, "Bearer secret-token-123");
	free(out);

	/* the tail: the last 21 bytes, the result line */
	assert_int_equal(kube_request_text(f->kc, "/text/log", 21, KUBE_TEXT_TAIL, 5000, &out, &len), AL_OK);
	assert_string_equal(out, "AIRLOCK-RESULT {\"ok\":true}\n" + 6);
	assert_int_equal(len, 21);
	free(out);
	/* without KUBE_TEXT_TAIL a longer answer is refused, nothing handed out */
	out = (char *)1;
	assert_int_equal(kube_request_text(f->kc, "/text/log", 21, 0, 0, &out, &len), AL_ERR_TOO_LARGE);
	assert_null(out);
	assert_int_equal(len, 0);
	assert_non_null(strstr(al_error_message(), "GET /text/log: the answer is larger than 21 bytes"));

	/* a long answer in many pieces: exactly its last bytes, for caps below,
	 * at and above a libcurl write */
	{
		const size_t caps[] = { 1, 99, 100, 4096, 16384, 16385, 100000, sizeof(big_text), sizeof(big_text) + 10 };
		for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
			size_t want = caps[c] < sizeof(big_text) ? caps[c] : sizeof(big_text);
			size_t from = sizeof(big_text) - want;
			assert_int_equal(kube_request_text(f->kc, "/text/big", caps[c], KUBE_TEXT_TAIL, 0, &out, &len), AL_OK);
			assert_int_equal(len, want);
			for (size_t i = 0; i < want; i++)
				if (out[i] != big_byte(from + i))
					fail_msg("cap %zu: byte %zu is %d, not %d", caps[c], i, out[i], big_byte(from + i));
			assert_int_equal(out[len], '\0');
			free(out);
		}
		assert_int_equal(kube_request_text(f->kc, "/text/big", sizeof(big_text), 0, 0, &out, NULL), AL_OK);
		assert_memory_equal(out, big_text, sizeof(big_text));
		free(out);
		assert_int_equal(kube_request_text(f->kc, "/text/big", sizeof(big_text) - 1, 0, 0, &out, NULL),
				 AL_ERR_TOO_LARGE);
		assert_null(out);
	}

	/* no content: "" */
	assert_int_equal(kube_request_text(f->kc, "/text/none", 10, KUBE_TEXT_TAIL, 0, &out, &len), AL_OK);
	assert_string_equal(out, "");
	assert_int_equal(len, 0);
	free(out);

	/* error answers: the Status' message, the same codes as kube_request */
	assert_int_equal(kube_request_text(f->kc, "/status/404", 1024, KUBE_TEXT_TAIL, 0, &out, NULL), AL_ERR_NOT_FOUND);
	assert_null(out);
	assert_string_equal(al_error_message(), "GET /status/404: configmaps \"x\" not found");
	assert_int_equal(kube_request_text(f->kc, "/status/400", 1024, 0, 0, &out, NULL), AL_ERR_INVALID);
	assert_string_equal(al_error_message(), "GET /status/400: bad thing");
	assert_int_equal(kube_request_text(f->kc, "/status/500", 1024, 0, 0, &out, NULL), AL_ERR_UNAVAILABLE);
	assert_int_equal(kube_request_text(f->kc, "/status/503-plain", 1024, 0, 0, &out, NULL), AL_ERR_UNAVAILABLE);
	assert_string_equal(al_error_message(), "GET /status/503-plain: HTTP 503");
	assert_int_equal(kube_request_text(f->kc, "/status/410", 1024, 0, 0, &out, NULL), AL_ERR_GONE);
	assert_int_equal(kube_request_text(f->kc, "/redirect", 1024, 0, 0, &out, NULL), AL_ERR_IO);
	assert_null(strstr(al_error_message(), "secret-token"));
	kube_client_request_counts(f->kc, after);
	assert_int_equal(after[KUBE_VERB_GET] - before[KUBE_VERB_GET], 3 + 9 + 2 + 1 + 6);
	assert_int_equal(after[KUBE_VERB_POST], before[KUBE_VERB_POST]);

	/* bad arguments never reach the server */
	fake.calls = 0;
	assert_int_equal(kube_request_text(f->kc, "text/log", 10, 0, 0, &out, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request_text(f->kc, "/a b", 10, 0, 0, &out, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request_text(f->kc, "/text/log", 0, 0, 0, &out, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request_text(f->kc, "/text/log", ((size_t)64 << 20) + 1, 0, 0, &out, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request_text(NULL, "/text/log", 10, 0, 0, &out, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_request_text(f->kc, "/text/log", 10, 0, 0, NULL, NULL), AL_ERR_INVALID);
	assert_null(out);
	assert_int_equal(fake.calls, 0);
}

static void expect_status(struct kube_client *kc, const char *path, int code, long http, const char *msg)
{
	json_t *out = NULL;
	long status = 0;
	char want[512];
	int rc = kube_request(kc, "GET", path, NULL, NULL, &status, &out);

	if (rc != code)
		fail_msg("%s: expected %d, got %d (%s)", path, code, rc, al_error_message());
	assert_int_equal(status, http);
	snprintf(want, sizeof(want), "GET %s: %s", path, msg);
	assert_string_equal(al_error_message(), want);
	assert_null(strstr(al_error_message(), "secret-token"));
	if (strstr(path, "plain"))
		assert_null(out);
	else
		assert_string_equal(json_string_value(json_object_get(out, "kind")), "Status");
	json_decref(out);
}

static void test_status_mapping(void **state)
{
	struct fixture *f = *state;

	expect_status(f->kc, "/status/400", AL_ERR_INVALID, 400, "bad thing");
	expect_status(f->kc, "/status/401", AL_ERR_UNAUTHORIZED, 401, "Unauthorized");
	expect_status(f->kc, "/status/403", AL_ERR_FORBIDDEN, 403, "configmaps is forbidden: User cannot list");
	expect_status(f->kc, "/status/404", AL_ERR_NOT_FOUND, 404, "configmaps \"x\" not found");
	expect_status(f->kc, "/status/409exists", AL_ERR_EXISTS, 409, "configmaps \"x\" already exists");
	expect_status(f->kc, "/status/409conflict", AL_ERR_CONFLICT, 409,
		      "Operation cannot be fulfilled: the object has been modified");
	expect_status(f->kc, "/status/410", AL_ERR_GONE, 410, "too old resource version");
	expect_status(f->kc, "/status/413", AL_ERR_TOO_LARGE, 413, "request is too large");
	expect_status(f->kc, "/status/422", AL_ERR_INVALID, 422, "spec.type: Unsupported value");
	expect_status(f->kc, "/status/500", AL_ERR_UNAVAILABLE, 500, "etcdserver: request timed out");
	expect_status(f->kc, "/status/503-plain", AL_ERR_UNAVAILABLE, 503, "HTTP 503");
	fake.fail_first = 1000;
	fake.calls = 0;
	expect_status(f->kc, "/status/429", AL_ERR_UNAVAILABLE, 429, "storage is (re)initializing");
}

static void test_network_error(void **state)
{
	struct kube_config cfg = { 0 };
	struct kube_client *kc;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	char server[64];
	int64_t t0;
	(void)state;

	/* a port that was free a moment ago: nothing listens there */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(server, sizeof(server), "http://127.0.0.1:%u/", (unsigned)ntohs(sa.sin_port));
	cfg.server = server;
	cfg.token = (char *)"secret-token-123";
	assert_int_equal(kube_client_new(&kc, &cfg), AL_OK);
	assert_string_equal(kube_client_namespace(kc), "default");
	assert_int_equal(kube_request(kc, "GET", "/api", NULL, NULL, NULL, NULL), AL_ERR_UNAVAILABLE);
	assert_non_null(strstr(al_error_message(), "GET /api: cannot reach the Kubernetes API server"));
	assert_null(strstr(al_error_message(), "secret-token"));
	t0 = util_monotonic_ms();
	assert_int_equal(kube_request_retry(kc, "GET", "/api", NULL, NULL, 700, NULL, NULL), AL_ERR_UNAVAILABLE);
	assert_true(util_monotonic_ms() - t0 < 1500);
	assert_non_null(strstr(al_error_message(), "gave up after"));
	kube_client_free(kc);

	cfg.server = (char *)"ftp://x";
	assert_int_equal(kube_client_new(&kc, &cfg), AL_ERR_INVALID);
	cfg.server = server;
	cfg.client_cert_pem = (char *)CERT_PEM;
	assert_int_equal(kube_client_new(&kc, &cfg), AL_ERR_INVALID);
}

static void test_retry(void **state)
{
	struct fixture *f = *state;
	json_t *out = NULL;
	long status = 0;
	int64_t t0;

	/* 503 twice, then 200 */
	fake.calls = 0;
	fake.fail_first = 2;
	assert_int_equal(kube_request_retry(f->kc, "GET", "/flaky", NULL, NULL, 10000, &status, &out), AL_OK);
	assert_int_equal(status, 200);
	assert_int_equal(json_integer_value(json_object_get(out, "calls")), 3);
	json_decref(out);

	/* not retryable: one call */
	fake.calls = 0;
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/404", NULL, NULL, 10000, &status, &out),
			 AL_ERR_NOT_FOUND);
	assert_int_equal(fake.calls, 1);
	assert_int_equal(status, 404);
	json_decref(out);
	fake.calls = 0;
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/409conflict", NULL, NULL, 10000, NULL, NULL),
			 AL_ERR_CONFLICT);
	assert_int_equal(fake.calls, 1);

	/* 429 with Retry-After: 1, then 200: waits about a second */
	fake.calls = 0;
	fake.fail_first = 1;
	t0 = util_monotonic_ms();
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/429", NULL, NULL, 10000, &status, &out), AL_OK);
	assert_true(util_monotonic_ms() - t0 >= 950);
	assert_int_equal(fake.calls, 2);
	assert_string_equal(json_string_value(json_object_get(out, "ok")), "after 429");
	json_decref(out);

	/* Retry-After beyond the deadline: give up at once with the last error */
	fake.calls = 0;
	fake.fail_first = 1000;
	t0 = util_monotonic_ms();
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/429", NULL, NULL, 500, &status, &out),
			 AL_ERR_UNAVAILABLE);
	assert_true(util_monotonic_ms() - t0 < 400);
	assert_int_equal(fake.calls, 1);
	assert_int_equal(status, 429);
	assert_string_equal(json_string_value(json_object_get(out, "reason")), "TooManyRequests");
	assert_non_null(strstr(al_error_message(), "GET /status/429: storage is (re)initializing (gave up after 1 attempt"));
	json_decref(out);
	/* details.retryAfterSeconds counts too */
	fake.calls = 0;
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/429-details", NULL, NULL, 2000, NULL, NULL),
			 AL_ERR_UNAVAILABLE);
	assert_int_equal(fake.calls, 1);

	/* 500 until the deadline: several attempts, stops near the deadline */
	fake.calls = 0;
	t0 = util_monotonic_ms();
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/500", NULL, NULL, 1500, &status, &out),
			 AL_ERR_UNAVAILABLE);
	assert_true(util_monotonic_ms() - t0 <= 1700);
	assert_true(fake.calls >= 2);
	assert_int_equal(status, 500);
	json_decref(out);

	/* no deadline: one attempt */
	fake.calls = 0;
	assert_int_equal(kube_request_retry(f->kc, "GET", "/status/500", NULL, NULL, 0, NULL, NULL), AL_ERR_UNAVAILABLE);
	assert_int_equal(fake.calls, 1);
}

static void test_token_file_rotation(void **state)
{
	struct fixture *f = *state;
	struct kube_config cfg = { 0 };
	struct kube_client *kc;
	char *tok = write_tmp("token", "token-one\n");

	cfg.server = f->server;
	cfg.token_file = tok;
	cfg.token = (char *)"token-zero"; /* what kube_config_load read; the file wins once re-read */
	assert_int_equal(kube_client_new(&kc, &cfg), AL_OK);

	/* default interval (60 s): the loaded token is used and the file not re-read */
	assert_int_equal(kube_request(kc, "GET", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.auth, "Bearer token-zero");

	kube_client_set_token_refresh_ms(kc, 50);
	usleep(60 * 1000);
	assert_int_equal(kube_request(kc, "GET", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.auth, "Bearer token-one");
	free(write_tmp("token", "token-two"));
	/* within the interval: still the old token */
	assert_int_equal(kube_request(kc, "GET", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.auth, "Bearer token-one");
	usleep(60 * 1000);
	assert_int_equal(kube_request(kc, "GET", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.auth, "Bearer token-two");

	/* the file vanishes mid-rotation: the last good token is kept */
	assert_int_equal(unlink(tok), 0);
	usleep(60 * 1000);
	assert_int_equal(kube_request(kc, "GET", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.auth, "Bearer token-two");

	/* no token at all: no Authorization header */
	kube_client_free(kc);
	cfg.token_file = NULL;
	cfg.token = NULL;
	assert_int_equal(kube_client_new(&kc, &cfg), AL_OK);
	assert_int_equal(kube_request(kc, "GET", "/echo", NULL, NULL, NULL, NULL), AL_OK);
	assert_string_equal(fake.auth, "");
	kube_client_free(kc);
	free(tok);
}

/* Many threads share one client (and its handle pool). */
struct par {
	struct kube_client *kc;
	int ok;
};

static void *par_main(void *arg)
{
	struct par *p = arg;
	for (int i = 0; i < 20; i++) {
		json_t *out = NULL;
		if (kube_request(p->kc, "GET", "/api/v1/namespaces", NULL, NULL, NULL, &out) == AL_OK &&
		    json_array_size(json_object_get(out, "items")) == 2)
			p->ok++;
		json_decref(out);
	}
	return NULL;
}

static void test_concurrent_requests(void **state)
{
	struct fixture *f = *state;
	struct kube_config cfg = { 0 };
	struct kube_client *kc;
	char *tok = write_tmp("token", "shared-token");
	pthread_t t[6];
	struct par p[6];

	/* the token file re-read before every request, from every thread */
	cfg.server = f->server;
	cfg.token_file = tok;
	assert_int_equal(kube_client_new(&kc, &cfg), AL_OK);
	kube_client_set_token_refresh_ms(kc, 0);
	for (int i = 0; i < 6; i++) {
		p[i].kc = kc;
		p[i].ok = 0;
		assert_int_equal(pthread_create(&t[i], NULL, par_main, &p[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(p[i].ok, 20);
	}
	assert_string_equal(fake.auth, "Bearer shared-token");
	kube_client_free(kc);
	free(tok);
}

/* ---- watches ---- */

struct events {
	struct buf log; /* "TYPE name-or-rv;" */
	int count;
	int stop_at;           /* return 1 at this event */
	int set_stop_at;       /* set *stop_flag at this event (and return 0) */
	atomic_int *stop_flag;
};

static int on_event(void *userdata, const char *type, const json_t *object)
{
	struct events *e = userdata;
	const json_t *md = json_object_get(object, "metadata");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *rv = json_string_value(json_object_get(md, "resourceVersion"));

	e->count++;
	assert_int_equal(buf_appendf(&e->log, "%s %s;", type, name ? name : rv ? rv : "-"), AL_OK);
	if (e->set_stop_at && e->count == e->set_stop_at)
		atomic_store(e->stop_flag, 1);
	return e->stop_at && e->count == e->stop_at;
}

static void test_watch_whole_body(void **state)
{
	struct fixture *f = *state;
	struct events e = { .count = 0 };
	atomic_int stop = 0;
	const char *coll = "/apis/xlscsde.nhs.uk/v1/namespaces/ns/analyticsworkspacedatasources";

	buf_init(&e.log, 0);
	assert_int_equal(kube_watch(f->kc, coll, "app=airlock,tier in (a,b)", "10", 300, on_event, &e, &stop), AL_OK);
	assert_string_equal(buf_cstr(&e.log), "ADDED ds1;MODIFIED ds1;BOOKMARK 13;DELETED ds1;");
	assert_string_equal(fake.query, "watch=1;allowWatchBookmarks=true;resourceVersion=10;timeoutSeconds=300;"
					"labelSelector=app=airlock,tier in (a,b);");
	assert_string_equal(fake.auth, "Bearer secret-token-123");

	/* no RV, no selector, no timeout */
	assert_int_equal(kube_watch(f->kc, coll, NULL, NULL, 0, on_event, &e, NULL), AL_OK);
	assert_string_equal(fake.query, "watch=1;allowWatchBookmarks=true;");

	/* the callback stops it */
	buf_reset(&e.log);
	e.count = 0;
	e.stop_at = 2;
	assert_int_equal(kube_watch(f->kc, coll, NULL, "10", 300, on_event, &e, &stop), AL_OK);
	assert_string_equal(buf_cstr(&e.log), "ADDED ds1;MODIFIED ds1;");

	/* stopped before it starts */
	stop = 1;
	fake.calls = 0;
	assert_int_equal(kube_watch(f->kc, coll, NULL, "10", 300, on_event, &e, &stop), AL_OK);
	assert_int_equal(fake.calls, 0);
	buf_free(&e.log);
}

static void test_watch_errors(void **state)
{
	struct fixture *f = *state;
	struct events e = { .count = 0 };

	buf_init(&e.log, 0);
	assert_int_equal(kube_watch(f->kc, "/watch/gone-event", NULL, "5", 60, on_event, &e, NULL), AL_ERR_GONE);
	assert_string_equal(buf_cstr(&e.log), "ADDED a;"); /* nothing after the ERROR */
	assert_non_null(strstr(al_error_message(), "too old resource version: 5 (99)"));
	assert_int_equal(kube_watch(f->kc, "/watch/gone-http", NULL, "1", 60, on_event, &e, NULL), AL_ERR_GONE);
	assert_string_equal(al_error_message(), "GET /watch/gone-http: too old resource version: 1 (50)");
	assert_int_equal(kube_watch(f->kc, "/watch/error-event", NULL, "1", 60, on_event, &e, NULL), AL_ERR_UNAVAILABLE);
	assert_non_null(strstr(al_error_message(), "internal error"));
	assert_int_equal(kube_watch(f->kc, "/watch/forbidden", NULL, "1", 60, on_event, &e, NULL), AL_ERR_FORBIDDEN);
	assert_string_equal(al_error_message(), "GET /watch/forbidden: cannot watch");
	buf_reset(&e.log);
	assert_int_equal(kube_watch(f->kc, "/watch/garbage", NULL, "1", 60, on_event, &e, NULL), AL_ERR_UNAVAILABLE);
	assert_non_null(strstr(al_error_message(), "not JSON"));
	assert_string_equal(buf_cstr(&e.log), "ADDED -;");
	buf_reset(&e.log);
	assert_int_equal(kube_watch(f->kc, "/watch/no-newline", NULL, "1", 60, on_event, &e, NULL), AL_OK);
	assert_string_equal(buf_cstr(&e.log), "ADDED last;");
	assert_int_equal(kube_watch(f->kc, "watch", NULL, "1", 60, on_event, &e, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_watch(f->kc, "/watch/x", NULL, "1", -1, on_event, &e, NULL), AL_ERR_INVALID);
	assert_int_equal(kube_watch(f->kc, "/watch/x", NULL, "1", 60, NULL, &e, NULL), AL_ERR_INVALID);
	buf_free(&e.log);
}

/* A raw socket server that streams a chunked watch body slowly, in chunks
 * cut mid-line, then keeps the connection open until the client leaves. */
struct stream_server {
	int fd;
	unsigned short port;
	pthread_t thread;
	char request[2048];
	int closed_by_client;
	int hold_ms;
};

static const char *const STREAM_PIECES[] = {
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"na",
	"me\":\"one\"}}}\r",
	"\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"42\"}}}\n{\"type\":\"MOD",
	"IFIED\",\"object\":{\"metadata\":{\"name\":\"one\"}}}\n",
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"two\"}}}\n",
	NULL,
};

static int send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *stream_main(void *arg)
{
	struct stream_server *s = arg;
	int c = accept(s->fd, NULL, NULL);
	size_t got = 0;
	const char *hdr = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";

	if (c < 0)
		return NULL;
	while (got < sizeof(s->request) - 1 && !strstr(s->request, "\r\n\r\n")) {
		ssize_t n = recv(c, s->request + got, sizeof(s->request) - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		s->request[got] = '\0';
	}
	if (send_all(c, hdr, strlen(hdr)) == 0) {
		for (int i = 0; STREAM_PIECES[i]; i++) {
			char size[32];
			snprintf(size, sizeof(size), "%zx\r\n", strlen(STREAM_PIECES[i]));
			if (send_all(c, size, strlen(size)) || send_all(c, STREAM_PIECES[i], strlen(STREAM_PIECES[i])) ||
			    send_all(c, "\r\n", 2))
				break;
			usleep(20 * 1000);
		}
		/* hold the stream open: the client must stop by itself */
		{
			struct pollfd p = { .fd = c, .events = POLLIN };
			char b[64];
			if (poll(&p, 1, s->hold_ms) == 1 && recv(c, b, sizeof(b), 0) <= 0)
				s->closed_by_client = 1;
		}
	}
	close(c);
	return NULL;
}

static void stream_start(struct stream_server *s, int hold_ms)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	memset(s, 0, sizeof(*s));
	s->hold_ms = hold_ms;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(s->fd, 4), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
	s->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, stream_main, s), 0);
}

static void stream_stop(struct stream_server *s)
{
	pthread_join(s->thread, NULL);
	close(s->fd);
}

static struct kube_client *stream_client(const struct stream_server *s)
{
	struct kube_config cfg = { 0 };
	struct kube_client *kc;
	char server[64];

	snprintf(server, sizeof(server), "http://127.0.0.1:%u", (unsigned)s->port);
	cfg.server = server;
	cfg.token = (char *)"stream-token";
	assert_int_equal(kube_client_new(&kc, &cfg), AL_OK);
	return kc;
}

static void test_watch_stream_stop_flag(void **state)
{
	struct stream_server s;
	struct kube_client *kc;
	struct events e = { .count = 0 };
	atomic_int stop = 0;
	int64_t t0;
	(void)state;

	stream_start(&s, 15000);
	kc = stream_client(&s);
	buf_init(&e.log, 0);
	e.stop_flag = &stop;
	e.set_stop_at = 4; /* the last event: afterwards no byte flows, only the progress callback sees it */
	t0 = util_monotonic_ms();
	assert_int_equal(kube_watch(kc, "/api/v1/namespaces/ns/configmaps", "a=b", "41", 30, on_event, &e, &stop), AL_OK);
	assert_true(util_monotonic_ms() - t0 < 5000);
	assert_string_equal(buf_cstr(&e.log), "ADDED one;BOOKMARK 42;MODIFIED one;ADDED two;");
	assert_non_null(strstr(s.request, "GET /api/v1/namespaces/ns/configmaps?watch=1&allowWatchBookmarks=true"
					  "&resourceVersion=41&timeoutSeconds=30&labelSelector=a%3Db HTTP/1.1\r\n"));
	assert_non_null(strstr(s.request, "Authorization: Bearer stream-token\r\n"));
	assert_non_null(strstr(s.request, "Accept: application/json\r\n"));
	kube_client_free(kc);
	stream_stop(&s);
	assert_int_equal(s.closed_by_client, 1);
	buf_free(&e.log);
}

static void test_watch_stream_callback_stop(void **state)
{
	struct stream_server s;
	struct kube_client *kc;
	struct events e = { .count = 0 };
	int64_t t0;
	(void)state;

	stream_start(&s, 15000);
	kc = stream_client(&s);
	buf_init(&e.log, 0);
	e.stop_at = 2;
	t0 = util_monotonic_ms();
	assert_int_equal(kube_watch(kc, "/api/v1/namespaces/ns/configmaps", NULL, "41", 30, on_event, &e, NULL), AL_OK);
	assert_true(util_monotonic_ms() - t0 < 3000);
	assert_string_equal(buf_cstr(&e.log), "ADDED one;BOOKMARK 42;");
	kube_client_free(kc);
	stream_stop(&s);
	assert_int_equal(s.closed_by_client, 1);
	buf_free(&e.log);
}

/* The server closes after the pieces without ending the chunked body. */
static void test_watch_stream_cut(void **state)
{
	struct stream_server s;
	struct kube_client *kc;
	struct events e = { .count = 0 };
	(void)state;

	stream_start(&s, 0);
	kc = stream_client(&s);
	buf_init(&e.log, 0);
	assert_int_equal(kube_watch(kc, "/api/v1/namespaces/ns/configmaps", NULL, "41", 30, on_event, &e, NULL),
			 AL_ERR_UNAVAILABLE);
	assert_string_equal(buf_cstr(&e.log), "ADDED one;BOOKMARK 42;MODIFIED one;ADDED two;");
	kube_client_free(kc);
	stream_stop(&s);
	buf_free(&e.log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_kubeconfig_token, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_kubeconfig_files_relative, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_kubeconfig_data_fields, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_kubeconfig_errors, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_kubeconfig_search_order, setup_tmp, teardown_tmp),
		cmocka_unit_test_setup_teardown(test_in_cluster, setup_tmp, teardown_tmp),
		cmocka_unit_test(test_splitter_every_offset),
		cmocka_unit_test(test_splitter_limits),
		cmocka_unit_test(test_event_parse),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_backoff),
		cmocka_unit_test_setup_teardown(test_request_basics, setup_fake, teardown_fake),
		cmocka_unit_test_setup_teardown(test_status_mapping, setup_fake, teardown_fake),
		cmocka_unit_test_setup_teardown(test_request_text, setup_fake, teardown_fake),
		cmocka_unit_test(test_network_error),
		cmocka_unit_test_setup_teardown(test_retry, setup_fake, teardown_fake),
		cmocka_unit_test_setup_teardown(test_token_file_rotation, setup_fake, teardown_fake),
		cmocka_unit_test_setup_teardown(test_concurrent_requests, setup_fake, teardown_fake),
		cmocka_unit_test_setup_teardown(test_watch_whole_body, setup_fake, teardown_fake),
		cmocka_unit_test_setup_teardown(test_watch_errors, setup_fake, teardown_fake),
		cmocka_unit_test(test_watch_stream_stop_flag),
		cmocka_unit_test(test_watch_stream_callback_stop),
		cmocka_unit_test(test_watch_stream_cut),
	};
	log_set_level(LOG_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
