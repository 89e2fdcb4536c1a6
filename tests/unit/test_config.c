/*
 * test_config.c - settings of `airlock serve`: defaults without a file, a
 * full file, unknown settings refused by their path, listen addresses,
 * absolute paths and the data directory's derived roots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "config/config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fixture {
	char dir[64];
	char *file;
	char cwd[PATH_MAX];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-config-XXXXXX");
	if (!mkdtemp(f->dir) || !getcwd(f->cwd, sizeof(f->cwd)))
		return -1;
	f->file = util_path_join(f->dir, "airlock.yaml");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	util_remove_tree(f->dir);
	free(f->file);
	free(f);
	return 0;
}

static void write_config(const struct fixture *f, const char *text)
{
	assert_int_equal(util_write_file_atomic(f->file, text, strlen(text), 0600), AL_OK);
}

/* cwd + "/" + rel */
static char *in_cwd(const struct fixture *f, const char *rel)
{
	char *p = util_path_join(f->cwd, rel);
	assert_non_null(p);
	return p;
}

static int has_extension(const struct airlock_config *cfg, const char *ext)
{
	size_t i;
	json_t *e;
	json_array_foreach(cfg->allowed_extensions, i, e)
		if (!strcmp(json_string_value(e), ext))
			return 1;
	return 0;
}

static void test_defaults_without_file(void **state)
{
	struct fixture *f = *state;
	struct airlock_config cfg;
	char *data = in_cwd(f, "var"), *staging = in_cwd(f, "var/staging"), *ws = in_cwd(f, "var/workspaces");

	assert_int_equal(config_load(&cfg, NULL), AL_OK);
	assert_string_equal(cfg.listen_address, "127.0.0.1");
	assert_int_equal(cfg.port, 8080);
	assert_string_equal(cfg.data_dir, data);
	assert_string_equal(cfg.staging_root, staging);
	assert_string_equal(cfg.workspace_root, ws);
	assert_int_equal(cfg.gates.n_request, 0);
	assert_int_equal(cfg.gates.n_review, 1);
	assert_string_equal(cfg.gates.review[0].type, "data-approver");
	assert_string_equal(cfg.gates.review[0].role, "approver");
	assert_int_equal(cfg.job_timeout_seconds, 3600);
	assert_true(cfg.max_file_bytes == (uint64_t)10 << 30);
	assert_true(cfg.max_total_bytes == (uint64_t)100 << 30);
	assert_true(cfg.max_files == 10000);
	assert_int_equal(cfg.token_ttl_seconds, 12 * 3600);
	assert_true(has_extension(&cfg, "csv"));
	assert_true(has_extension(&cfg, "parquet"));
	assert_true(has_extension(&cfg, "json"));
	assert_false(has_extension(&cfg, "exe"));
	assert_false(has_extension(&cfg, "sh"));
	config_free(&cfg);
	/* config_free leaves a zeroed struct; freeing again is harmless. */
	assert_null(cfg.data_dir);
	config_free(&cfg);
	free(data);
	free(staging);
	free(ws);
}

static void test_full_file(void **state)
{
	struct fixture *f = *state;
	struct airlock_config cfg;
	char text[2048];
	snprintf(text, sizeof(text),
		 "# every setting\n"
		 "listen: 0.0.0.0:9443\n"
		 "dataDir: %s/data\n"
		 "stagingRoot: %s/stage\n"
		 "workspaceRoot: %s/ws\n"
		 "gates:\n"
		 "  request:\n"
		 "  - {type: information-governance, role: approver}\n"
		 "  review:\n"
		 "  - {type: data-approver, role: approver}\n"
		 "  - {type: caldicott, role: admin}\n"
		 "jobs: {timeoutSeconds: 60}\n"
		 "checks:\n"
		 "  maxFileBytes: 1024\n"
		 "  maxTotalBytes: 4096\n"
		 "  maxFiles: 5\n"
		 "  allowedExtensions: [csv, TSV]\n"
		 "tokens: {ttlSeconds: 600}\n",
		 f->dir, f->dir, f->dir);
	write_config(f, text);
	assert_int_equal(config_load(&cfg, f->file), AL_OK);
	assert_string_equal(cfg.listen_address, "0.0.0.0");
	assert_int_equal(cfg.port, 9443);
	{
		char *d = util_path_join(f->dir, "data"), *s = util_path_join(f->dir, "stage"),
		     *w = util_path_join(f->dir, "ws");
		assert_string_equal(cfg.data_dir, d);
		assert_string_equal(cfg.staging_root, s);
		assert_string_equal(cfg.workspace_root, w);
		free(d);
		free(s);
		free(w);
	}
	assert_int_equal(cfg.gates.n_request, 1);
	assert_string_equal(cfg.gates.request[0].type, "information-governance");
	assert_int_equal(cfg.gates.n_review, 2);
	assert_string_equal(cfg.gates.review[1].type, "caldicott");
	assert_string_equal(cfg.gates.review[1].role, "admin");
	assert_int_equal(cfg.job_timeout_seconds, 60);
	assert_true(cfg.max_file_bytes == 1024);
	assert_true(cfg.max_total_bytes == 4096);
	assert_true(cfg.max_files == 5);
	assert_int_equal(json_array_size(cfg.allowed_extensions), 2);
	assert_true(has_extension(&cfg, "csv"));
	assert_true(has_extension(&cfg, "TSV"));
	assert_false(has_extension(&cfg, "json"));
	assert_int_equal(cfg.token_ttl_seconds, 600);

	/* A data dir given later (serve --data-dir) keeps the explicit roots. */
	assert_int_equal(config_set_data_dir(&cfg, "/srv/airlock"), AL_OK);
	assert_string_equal(cfg.data_dir, "/srv/airlock");
	assert_non_null(strstr(cfg.staging_root, "/stage"));
	assert_non_null(strstr(cfg.workspace_root, "/ws"));
	config_free(&cfg);

	/* A partial file: the rest stay default; an explicit staging root only. */
	write_config(f, "stagingRoot: /mnt/staging\njobs: {}\n");
	assert_int_equal(config_load(&cfg, f->file), AL_OK);
	assert_int_equal(config_set_data_dir(&cfg, "/srv/x"), AL_OK);
	assert_string_equal(cfg.staging_root, "/mnt/staging");
	assert_string_equal(cfg.workspace_root, "/srv/x/workspaces");
	assert_int_equal(cfg.job_timeout_seconds, 3600);
	assert_int_equal(cfg.port, 8080);
	config_free(&cfg);
}

/* Loads `text`, expects AL_ERR_INVALID whose message names `where` and the file. */
static void expect_bad(struct fixture *f, const char *text, const char *where)
{
	struct airlock_config cfg;
	int rc;
	write_config(f, text);
	rc = config_load(&cfg, f->file);
	if (rc != AL_ERR_INVALID || !strstr(al_error_message(), where))
		fprintf(stderr, "config %s: rc %d, message: %s\n", text, rc, al_error_message());
	assert_int_equal(rc, AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), where));
	assert_non_null(strstr(al_error_message(), f->file));
	/* A failed load leaves nothing to free. */
	assert_null(cfg.data_dir);
	assert_null(cfg.allowed_extensions);
	assert_null(cfg.gates.review);
}

static void test_unknown_keys_refused(void **state)
{
	struct fixture *f = *state;
	expect_bad(f, "listne: 127.0.0.1:80\n", "listne: unknown setting");
	expect_bad(f, "dataDir: /x\ndatadir: /y\n", "datadir: unknown setting");
	expect_bad(f, "jobs: {timeout: 5}\n", "jobs.timeout: unknown setting");
	expect_bad(f, "checks: {maxFileSize: 5}\n", "checks.maxFileSize: unknown setting");
	expect_bad(f, "checks: {allowedExtension: [csv]}\n", "checks.allowedExtension: unknown setting");
	expect_bad(f, "tokens: {ttl: 600}\n", "tokens.ttl: unknown setting");
	expect_bad(f, "gates: {reviews: []}\n", "gates.reviews: unknown setting");
	expect_bad(f, "gates: {review: [{type: a, role: b, who: c}]}\n", "gates.review[0]");
}

static void test_bad_values_refused(void **state)
{
	struct fixture *f = *state;
	struct airlock_config cfg;
	expect_bad(f, "listen: nonsense\n", "listen");
	expect_bad(f, "listen: [1]\n", "listen");
	expect_bad(f, "dataDir: ''\n", "dataDir");
	expect_bad(f, "dataDir: 5\n", "dataDir");
	expect_bad(f, "stagingRoot: {}\n", "stagingRoot");
	expect_bad(f, "workspaceRoot: ''\n", "workspaceRoot");
	expect_bad(f, "jobs: 5\n", "jobs: must be a mapping");
	expect_bad(f, "jobs: {timeoutSeconds: 0}\n", "jobs.timeoutSeconds");
	expect_bad(f, "jobs: {timeoutSeconds: -5}\n", "jobs.timeoutSeconds");
	expect_bad(f, "jobs: {timeoutSeconds: soon}\n", "jobs.timeoutSeconds");
	expect_bad(f, "jobs: {timeoutSeconds: 99999999}\n", "jobs.timeoutSeconds");
	expect_bad(f, "checks: {maxFiles: 100001}\n", "checks.maxFiles");
	expect_bad(f, "checks: {maxFileBytes: 0}\n", "checks.maxFileBytes");
	expect_bad(f, "checks: {maxTotalBytes: 1.5}\n", "checks.maxTotalBytes");
	expect_bad(f, "checks: {allowedExtensions: csv}\n", "checks.allowedExtensions");
	expect_bad(f, "checks: {allowedExtensions: [csv, .exe]}\n", "checks.allowedExtensions[1]");
	expect_bad(f, "checks: {allowedExtensions: ['']}\n", "checks.allowedExtensions[0]");
	expect_bad(f, "tokens: {ttlSeconds: 10}\n", "tokens.ttlSeconds");
	expect_bad(f, "gates: {review: []}\n", "gates.review");
	expect_bad(f, "gates: []\n", "gates");
	expect_bad(f, "- a list\n", "must be a mapping");
	/* Not YAML at all, and a file that does not exist. */
	write_config(f, "listen: [unclosed\n");
	assert_true(config_load(&cfg, f->file) < 0);
	assert_non_null(strstr(al_error_message(), f->file));
	assert_null(cfg.data_dir);
	assert_true(config_load(&cfg, "/nonexistent/airlock.yaml") < 0);
	assert_null(cfg.data_dir);
}

static void test_listen(void **state)
{
	(void)state;
	struct airlock_config cfg;
	assert_int_equal(config_load(&cfg, NULL), AL_OK);

	assert_int_equal(config_parse_listen(&cfg, "10.0.0.1:8443"), AL_OK);
	assert_string_equal(cfg.listen_address, "10.0.0.1");
	assert_int_equal(cfg.port, 8443);
	/* ":port" and "port" keep the host. */
	assert_int_equal(config_parse_listen(&cfg, ":9000"), AL_OK);
	assert_string_equal(cfg.listen_address, "10.0.0.1");
	assert_int_equal(cfg.port, 9000);
	assert_int_equal(config_parse_listen(&cfg, "9001"), AL_OK);
	assert_string_equal(cfg.listen_address, "10.0.0.1");
	assert_int_equal(cfg.port, 9001);
	/* Port 0: any free port (the e2e tests use it). */
	assert_int_equal(config_parse_listen(&cfg, "127.0.0.1:0"), AL_OK);
	assert_int_equal(cfg.port, 0);
	assert_int_equal(config_parse_listen(&cfg, "[::1]:65535"), AL_OK);
	assert_string_equal(cfg.listen_address, "::1");
	assert_int_equal(cfg.port, 65535);
	assert_int_equal(config_parse_listen(&cfg, "localhost:80"), AL_OK);
	assert_string_equal(cfg.listen_address, "localhost");

	/* Refused, and nothing changed. */
	const char *bad[] = { "", "nonsense", "host:", "host:65536", "host:-1", "host:80x", "1.2.3.4:abc",
			      ":", "host:99999999999999999999",
			      "::1", "::1:80", "[::1:80", "[]:80", "[::1]x:80" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(config_parse_listen(&cfg, bad[i]), AL_ERR_INVALID);
		assert_non_null(strstr(al_error_message(), "listen"));
		assert_string_equal(cfg.listen_address, "localhost");
		assert_int_equal(cfg.port, 80);
	}
	config_free(&cfg);
}

static void test_paths_absolute_and_data_dir(void **state)
{
	struct fixture *f = *state;
	struct airlock_config cfg;
	char *want;

	write_config(f, "dataDir: ./relative/data\nworkspaceRoot: ws\n");
	assert_int_equal(config_load(&cfg, f->file), AL_OK);
	want = in_cwd(f, "relative/data");
	assert_string_equal(cfg.data_dir, want);
	free(want);
	want = in_cwd(f, "relative/data/staging");
	assert_string_equal(cfg.staging_root, want);
	free(want);
	want = in_cwd(f, "ws");
	assert_string_equal(cfg.workspace_root, want);
	free(want);
	assert_true(cfg.data_dir[0] == '/' && cfg.staging_root[0] == '/' && cfg.workspace_root[0] == '/');

	/* config_set_data_dir re-derives the roots that were not set. */
	assert_int_equal(config_set_data_dir(&cfg, "/var/lib/airlock"), AL_OK);
	assert_string_equal(cfg.data_dir, "/var/lib/airlock");
	assert_string_equal(cfg.staging_root, "/var/lib/airlock/staging");
	want = in_cwd(f, "ws");
	assert_string_equal(cfg.workspace_root, want);
	free(want);
	config_free(&cfg);

	assert_int_equal(config_load(&cfg, NULL), AL_OK);
	assert_int_equal(config_set_data_dir(&cfg, "."), AL_OK);
	assert_string_equal(cfg.data_dir, f->cwd);
	want = in_cwd(f, "staging");
	assert_string_equal(cfg.staging_root, want);
	free(want);
	want = in_cwd(f, "workspaces");
	assert_string_equal(cfg.workspace_root, want);
	free(want);
	assert_int_equal(config_set_data_dir(&cfg, "d2"), AL_OK);
	want = in_cwd(f, "d2/staging");
	assert_string_equal(cfg.staging_root, want);
	free(want);
	assert_int_equal(config_set_data_dir(&cfg, "/data/"), AL_OK);
	assert_true(strstr(cfg.staging_root, "/data") == cfg.staging_root);
	assert_null(strstr(cfg.staging_root, "//"));
	config_free(&cfg);
}

/* A file of comments only is refused with a message naming the file and
 * saying it is empty (no file at all is how to get every default). */
static void test_empty_file(void **state)
{
	struct fixture *f = *state;
	struct airlock_config cfg;
	write_config(f, "# nothing set\n");
	assert_int_equal(config_load(&cfg, f->file), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), f->file));
	assert_non_null(strstr(al_error_message(), "empty"));
	assert_null(cfg.data_dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults_without_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_keys_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_values_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths_absolute_and_data_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
