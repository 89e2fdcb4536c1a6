/*
 * test_checks.c - gate 3, the automated checks over a manifest: limits,
 * allowed file types, unsafe names, and a malware check that never claims
 * to be clean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "config/config.h"
#include "gates/checks.h"

#include <stdlib.h>
#include <string.h>

static int setup(void **state)
{
	struct airlock_config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg || config_load(cfg, NULL) != AL_OK) {
		free(cfg);
		return -1;
	}
	*state = cfg;
	return 0;
}

static int teardown(void **state)
{
	config_free(*state);
	free(*state);
	return 0;
}

/* A manifest of `n` files: paths[i] with sizes[i]. */
static json_t *manifest(size_t n, const char *const *paths, const json_int_t *sizes)
{
	json_t *files = json_array(), *m;
	assert_non_null(files);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(json_array_append_new(files, json_pack("{s:s, s:I, s:s}", "path", paths[i], "size",
									 sizes[i], "sha256", "00")),
				 0);
	m = json_pack("{s:s, s:o}", "digest", "d", "files", files);
	assert_non_null(m);
	return m;
}

static const char *result_of(const json_t *checks, const char *name)
{
	size_t i;
	json_t *c;
	json_array_foreach(checks, i, c)
		if (!strcmp(json_string_value(json_object_get(c, "name")), name))
			return json_string_value(json_object_get(c, "result"));
	return NULL;
}

static const char *message_of(const json_t *checks, const char *name)
{
	size_t i;
	json_t *c;
	json_array_foreach(checks, i, c)
		if (!strcmp(json_string_value(json_object_get(c, "name")), name))
			return json_string_value(json_object_get(c, "message"));
	return NULL;
}

/* Runs the checks; returns `passed`; *checks and *reason for inspection. */
static int run(const struct airlock_config *cfg, const json_t *m, json_t **checks, char **reason)
{
	int passed = -1;
	assert_int_equal(checks_run(cfg, m, checks, &passed, reason), AL_OK);
	assert_non_null(*checks);
	assert_true(passed == 0 || passed == 1);
	if (passed)
		assert_null(*reason);
	else
		assert_non_null(*reason);
	/* Every check has a name, a known result and a message. */
	{
		size_t i;
		json_t *c;
		json_array_foreach(*checks, i, c) {
			const char *r = json_string_value(json_object_get(c, "result"));
			assert_non_null(json_string_value(json_object_get(c, "name")));
			assert_non_null(json_string_value(json_object_get(c, "message")));
			assert_true(!strcmp(r, "passed") || !strcmp(r, "failed") || !strcmp(r, "not-scanned"));
		}
	}
	/* The malware scan is never "clean" without a scanner. */
	assert_string_equal(result_of(*checks, "malware"), "not-scanned");
	return passed;
}

/* Only `failing` fails (NULL: nothing fails). */
static void expect_only_failure(const json_t *checks, const char *failing)
{
	static const char *const names[] = { "not-empty", "file-count", "file-size", "total-size", "file-types",
					     "file-names", NULL };
	for (size_t i = 0; names[i]; i++)
		assert_string_equal(result_of(checks, names[i]),
				    failing && !strcmp(failing, names[i]) ? "failed" : "passed");
}

static void test_good_manifest_passes(void **state)
{
	const struct airlock_config *cfg = *state;
	const char *paths[] = { "patients.csv", "attendances.csv", "ro-crate-metadata.json", "sub/dir/notes.txt" };
	json_int_t sizes[] = { 1000, 2000, 300, 0 };
	json_t *m = manifest(4, paths, sizes), *checks = NULL;
	char *reason = NULL;
	assert_int_equal(run(cfg, m, &checks, &reason), 1);
	expect_only_failure(checks, NULL);
	assert_int_equal(json_array_size(checks), 7);
	assert_non_null(strstr(message_of(checks, "malware"), "not scanned"));
	json_decref(checks);
	json_decref(m);
}

static void test_empty_manifest_fails(void **state)
{
	const struct airlock_config *cfg = *state;
	json_t *m = manifest(0, NULL, NULL), *checks = NULL;
	char *reason = NULL;
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	expect_only_failure(checks, "not-empty");
	assert_non_null(strstr(reason, "no files"));
	json_decref(checks);
	free(reason);
	json_decref(m);

	/* No files list at all, or no manifest: the same. */
	m = json_pack("{s:s}", "digest", "d");
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	expect_only_failure(checks, "not-empty");
	json_decref(checks);
	free(reason);
	json_decref(m);
	assert_int_equal(run(cfg, NULL, &checks, &reason), 0);
	json_decref(checks);
	free(reason);
}

static void test_file_count_limit(void **state)
{
	struct airlock_config *cfg = *state;
	const char *paths[] = { "a.csv", "b.csv", "c.csv" };
	json_int_t sizes[] = { 1, 1, 1 };
	json_t *m = manifest(3, paths, sizes), *checks = NULL;
	char *reason = NULL;
	uint64_t saved = cfg->max_files;

	cfg->max_files = 3;
	assert_int_equal(run(cfg, m, &checks, &reason), 1);
	json_decref(checks);
	cfg->max_files = 2;
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	expect_only_failure(checks, "file-count");
	assert_non_null(strstr(reason, "3 files (limit 2)"));
	json_decref(checks);
	free(reason);
	cfg->max_files = saved;
	json_decref(m);
}

static void test_file_size_limits(void **state)
{
	struct airlock_config *cfg = *state;
	const char *paths[] = { "small.csv", "big.csv" };
	json_int_t sizes[] = { 8, 10 };
	json_t *m = manifest(2, paths, sizes), *checks = NULL;
	char *reason = NULL;
	uint64_t saved_file = cfg->max_file_bytes, saved_total = cfg->max_total_bytes;

	/* At the limits: passes. */
	cfg->max_file_bytes = 10;
	cfg->max_total_bytes = 18;
	assert_int_equal(run(cfg, m, &checks, &reason), 1);
	json_decref(checks);

	/* One byte over per file: names the largest file. */
	cfg->max_file_bytes = 9;
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	expect_only_failure(checks, "file-size");
	assert_non_null(strstr(reason, "big.csv"));
	assert_non_null(strstr(reason, "10 bytes (limit 9)"));
	json_decref(checks);
	free(reason);

	/* One byte over in total. */
	cfg->max_file_bytes = 10;
	cfg->max_total_bytes = 17;
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	expect_only_failure(checks, "total-size");
	assert_non_null(strstr(reason, "18 bytes in all (limit 17)"));
	json_decref(checks);
	free(reason);

	/* Both: the reason names the first failure, both checks fail. */
	cfg->max_file_bytes = 9;
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	assert_string_equal(result_of(checks, "file-size"), "failed");
	assert_string_equal(result_of(checks, "total-size"), "failed");
	assert_non_null(strstr(reason, "big.csv"));
	assert_null(strstr(reason, "in all"));
	json_decref(checks);
	free(reason);
	cfg->max_file_bytes = saved_file;
	cfg->max_total_bytes = saved_total;
	json_decref(m);
}

static int types_pass(const struct airlock_config *cfg, const char *path)
{
	const char *paths[] = { path };
	json_int_t sizes[] = { 1 };
	json_t *m = manifest(1, paths, sizes), *checks = NULL;
	char *reason = NULL;
	int passed = run(cfg, m, &checks, &reason);
	if (!passed) {
		expect_only_failure(checks, "file-types");
		assert_non_null(strstr(reason, path));
		assert_non_null(strstr(reason, "file type not allowed"));
	}
	json_decref(checks);
	free(reason);
	json_decref(m);
	return passed;
}

static void test_extension_allow_list(void **state)
{
	struct airlock_config *cfg = *state;
	json_t *saved = cfg->allowed_extensions;

	assert_true(types_pass(cfg, "a.csv"));
	assert_true(types_pass(cfg, "A.CSV"));
	assert_true(types_pass(cfg, "dir/b.Parquet"));
	assert_true(types_pass(cfg, "archive.tar.gz"));
	assert_true(types_pass(cfg, "ro-crate-metadata.json"));
	assert_false(types_pass(cfg, "run.exe"));
	assert_false(types_pass(cfg, "script.sh"));
	assert_false(types_pass(cfg, "README"));
	assert_false(types_pass(cfg, ".csv"));
	assert_false(types_pass(cfg, "dir.csv/file"));
	assert_false(types_pass(cfg, "file."));

	/* A narrow allow-list: ro-crate-metadata.json is still allowed, other JSON not. */
	cfg->allowed_extensions = json_pack("[s]", "CSV");
	assert_true(types_pass(cfg, "a.csv"));
	assert_true(types_pass(cfg, "ro-crate-metadata.json"));
	assert_true(types_pass(cfg, "sub/ro-crate-metadata.json"));
	assert_false(types_pass(cfg, "data.json"));
	assert_false(types_pass(cfg, "RO-CRATE-METADATA.JSON"));
	assert_false(types_pass(cfg, "x-ro-crate-metadata.json"));
	json_decref(cfg->allowed_extensions);
	/* Nothing allowed at all. */
	cfg->allowed_extensions = json_array();
	assert_false(types_pass(cfg, "a.csv"));
	assert_true(types_pass(cfg, "ro-crate-metadata.json"));
	json_decref(cfg->allowed_extensions);
	cfg->allowed_extensions = saved;
}

static int names_pass(const struct airlock_config *cfg, const char *path)
{
	const char *paths[] = { path };
	json_int_t sizes[] = { 1 };
	json_t *m = manifest(1, paths, sizes), *checks = NULL;
	char *reason = NULL;
	int passed = run(cfg, m, &checks, &reason);
	if (!passed) {
		assert_string_equal(result_of(checks, "file-names"), "failed");
		assert_non_null(strstr(message_of(checks, "file-names"), "unsafe file name"));
	}
	json_decref(checks);
	free(reason);
	json_decref(m);
	return passed;
}

static void test_unsafe_names(void **state)
{
	const struct airlock_config *cfg = *state;
	assert_true(names_pass(cfg, "ok/name with spaces.csv"));
	assert_true(names_pass(cfg, "Ñoño.csv"));
	assert_false(names_pass(cfg, "../escape.csv"));
	assert_false(names_pass(cfg, "a/../../b.csv"));
	assert_false(names_pass(cfg, "/etc/passwd.txt"));
	assert_false(names_pass(cfg, "back\\slash.csv"));
	assert_false(names_pass(cfg, "new\nline.csv"));
	assert_false(names_pass(cfg, "tab\t.csv"));
	assert_false(names_pass(cfg, "del\x7f.csv"));
	assert_false(names_pass(cfg, "esc\x1b[31m.csv"));
}

/* Several problems at once: every check reports, malware stays not-scanned,
 * the reason is the first failure. */
static void test_everything_fails(void **state)
{
	struct airlock_config *cfg = *state;
	const char *paths[] = { "../x.exe", "b.csv" };
	json_int_t sizes[] = { 100, 100 };
	json_t *m = manifest(2, paths, sizes), *checks = NULL;
	char *reason = NULL;
	uint64_t f = cfg->max_files, fb = cfg->max_file_bytes, tb = cfg->max_total_bytes;
	cfg->max_files = 1;
	cfg->max_file_bytes = 1;
	cfg->max_total_bytes = 1;
	assert_int_equal(run(cfg, m, &checks, &reason), 0);
	assert_string_equal(result_of(checks, "not-empty"), "passed");
	assert_string_equal(result_of(checks, "file-count"), "failed");
	assert_string_equal(result_of(checks, "file-size"), "failed");
	assert_string_equal(result_of(checks, "total-size"), "failed");
	assert_string_equal(result_of(checks, "file-types"), "failed");
	assert_string_equal(result_of(checks, "file-names"), "failed");
	assert_string_equal(reason, "2 files (limit 1)");
	json_decref(checks);
	free(reason);
	json_decref(m);
	cfg->max_files = f;
	cfg->max_file_bytes = fb;
	cfg->max_total_bytes = tb;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_manifest_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_manifest_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_count_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_size_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extension_allow_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsafe_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_everything_fails, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
