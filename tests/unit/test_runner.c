/* Unit tests for src/runner: SQLite source -> CSV files + RO-Crate. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "resource/resource.h"
#include "runner/runner.h"
#include "runner/source.h"
#include "runner/source_sqlite.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
	char dir[64];
	char *db;
	char *out;
	char url[512];
};

static void exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_runner.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = util_path_join(f->dir, "src.db");
	f->out = util_path_join(f->dir, "out");
	snprintf(f->url, sizeof(f->url), "sqlite:///%s", f->db + 1);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	exec(db, "CREATE TABLE t(i INTEGER, r REAL, s TEXT, n TEXT, b BLOB);"
		 "INSERT INTO t VALUES (1, 0.5, 'plain', 'x', x'00ff');"
		 "INSERT INTO t VALUES (-42, 1e20, 'a,b \"quoted\"', NULL, NULL);"
		 "INSERT INTO t VALUES (9223372036854775807, 0.1, 'line1' || char(13,10) || 'line2', '', x'');"
		 "INSERT INTO t VALUES (NULL, NULL, 'Zo' || char(235) || ' caf' || char(233) || ' ' || char(8364), NULL, 'abc');"
		 "CREATE TABLE \"we\"\"ird\"(v INTEGER); INSERT INTO \"we\"\"ird\" VALUES (7);"
		 "CREATE TABLE other(k TEXT); INSERT INTO other VALUES ('k1');");
	/* A text value that is not UTF-8 (SQLite stores what it is given). */
	exec(db, "CREATE TABLE bad(id INTEGER, s TEXT); INSERT INTO bad VALUES (1, 'fine');");
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO bad VALUES (2, ?)", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, "ab\xff", 3, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	util_remove_tree(f->dir);
	free(f->db);
	free(f->out);
	free(f);
	return 0;
}

/* tables: names separated by ',' */
static json_t *datasource(const char *url, const char *type, const char *tables)
{
	json_t *objects = json_array();
	for (const char *t = tables; *t;) {
		size_t n = strcspn(t, ",");
		json_array_append_new(objects, json_pack("{s:{s:s%, s:s}}", "table", "name", t, n, "connection", "src"));
		t += n;
		if (*t)
			t++;
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:{s:s}, s:{s:s, s:{s:s, s:s}}, s:[{s:s, s:s, s:s, s:{s:s, s:s}}], s:o}}",
			 "apiVersion", "xlscsde.nhs.uk/v1", "kind", "AnalyticsWorkspaceDataSource", "spec", "type",
			 "Import", "displayName", "Runner test", "description", "Test tables", "project", "id", "d4e6",
			 "publisher", "organisation", "Test Org", "contact", "name", "Ann", "role", "Engineer",
			 "connections", "type", type, "name", "src", "url", url, "credentials", "userKey", "U",
			 "passwordKey", "P", "objects", objects);
}

static char *read_out(struct fx *f, const char *name)
{
	char *path = util_path_join(f->out, name), *text = NULL;
	size_t len;
	int rc = util_read_file(path, 1 << 20, &text, &len);
	free(path);
	return rc ? NULL : text;
}

static int count_entries(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name), s = strlen(suffix);
		if (de->d_name[0] != '.' && l >= s && !strcmp(de->d_name + l - s, suffix))
			n++;
	}
	closedir(d);
	return n;
}

static void test_export_bytes(void **state)
{
	struct fx *f = *state;
	json_t *ds = datasource(f->url, "sqlite", "t,we\"ird");
	json_t *creds = json_pack("{s:s, s:s}", "U", "bob", "P", "hunter2-SECRET-PW");
	struct runner_options o = { .output_dir = f->out };
	struct stat before, after;
	char *csv, *meta;

	assert_int_equal(stat(f->db, &before), 0);
	if (runner_run(ds, creds, &o))
		fail_msg("%s", al_error_message());
	csv = read_out(f, "t.csv");
	assert_non_null(csv);
	assert_string_equal(csv, "i,r,s,n,b\r\n"
				 "1,0.5,plain,x,AP8=\r\n"
				 "-42,1.0e+20,\"a,b \"\"quoted\"\"\",,\r\n"
				 "9223372036854775807,0.1,\"line1\r\nline2\",\"\",\"\"\r\n" /* empty BLOB: "" */
				 ",,Zo\xc3\xab caf\xc3\xa9 \xe2\x82\xac,,abc\r\n");
	free(csv);
	csv = read_out(f, "we\"ird.csv");
	assert_non_null(csv);
	assert_string_equal(csv, "v\r\n7\r\n");
	free(csv);
	meta = read_out(f, "ro-crate-metadata.json");
	assert_non_null(meta);
	assert_non_null(strstr(meta, "\"CompletedActionStatus\""));
	assert_non_null(strstr(meta, "\"airlock:rowCount\": 4"));
	assert_non_null(strstr(meta, "\"airlock-native-runner\""));
	assert_non_null(strstr(meta, "sqlite database src.db"));
	assert_null(strstr(meta, "hunter2"));
	assert_null(strstr(meta, f->dir)); /* no full path of the source */
	free(meta);
	assert_int_equal(count_entries(f->out, ".part"), 0);
	/* Read-only: the source is untouched. */
	assert_int_equal(stat(f->db, &after), 0);
	assert_int_equal(before.st_mtime, after.st_mtime);
	assert_int_equal(before.st_size, after.st_size);
	json_decref(ds);
	runner_credentials_free(creds);
}

static void test_missing_table(void **state)
{
	struct fx *f = *state;
	json_t *ds = datasource(f->url, "sqlite", "t,nope");
	struct runner_options o = { .output_dir = f->out };

	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_NOT_FOUND);
	assert_non_null(strstr(al_error_message(), "table 'nope' not found in src.db; tables present: bad, other, t, we\"ird"));
	/* Checked before writing anything: the output directory was not even made. */
	assert_false(util_path_exists(f->out));
	json_decref(ds);
}

static void test_bad_connection_type(void **state)
{
	struct fx *f = *state;
	json_t *ds = datasource("https://user:TOPSECRET@example/x", "oracle", "t");
	struct runner_options o = { .output_dir = f->out };

	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "connection type 'oracle' is not supported"));
	assert_non_null(strstr(al_error_message(), "supported: sqlite"));
	assert_null(strstr(al_error_message(), "TOPSECRET"));
	assert_false(util_path_exists(f->out));
	json_decref(ds);
}

static void test_invalid_utf8_fails_cleanly(void **state)
{
	struct fx *f = *state;
	json_t *ds = datasource(f->url, "sqlite", "other,bad");
	struct runner_options o = { .output_dir = f->out };
	char *meta, *csv;

	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "table 'bad' row 2 column 's'"));
	assert_non_null(strstr(al_error_message(), "not valid UTF-8"));
	assert_int_equal(count_entries(f->out, ".part"), 0);
	csv = read_out(f, "bad.csv");
	assert_null(csv);
	csv = read_out(f, "other.csv"); /* finished before the failure: kept */
	assert_non_null(csv);
	assert_string_equal(csv, "k\r\nk1\r\n");
	free(csv);
	meta = read_out(f, "ro-crate-metadata.json");
	assert_non_null(meta);
	assert_non_null(strstr(meta, "FailedActionStatus"));
	assert_non_null(strstr(meta, "not valid UTF-8"));
	free(meta);
	json_decref(ds);
}

static void test_spec_errors(void **state)
{
	struct fx *f = *state;
	struct runner_options o = { .output_dir = f->out };
	json_t *ds;

	ds = datasource(f->url, "sqlite", "t,T");
	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "collected twice"));
	json_decref(ds);
	ds = datasource(f->url, "sqlite", "../etc");
	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "must not start with '.'"));
	json_decref(ds);
	ds = datasource("sqlite:///no/such/file.db", "sqlite", "t");
	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_NOT_FOUND);
	assert_non_null(strstr(al_error_message(), "/no/such/file.db"));
	json_decref(ds);
	ds = json_pack("{s:{s:[{s:s,s:s,s:s}], s:[{s:{s:s,s:s}}]}}", "spec", "connections", "type", "sqlite",
		       "name", "a", "url", f->url, "objects", "table", "name", "t", "connection", "zzz");
	assert_int_equal(runner_run(ds, NULL, &o), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "no connection named 'zzz'"));
	json_decref(ds);
	assert_false(util_path_exists(f->out));
}

static void test_url_forms(void **state)
{
	static const struct {
		const char *url, *path;
	} ok[] = {
		{ "sqlite:///abs/x.db", "/abs/x.db" },
		{ "sqlite:////abs/x.db", "/abs/x.db" },
		{ "sqlite:rel/x.db", "rel/x.db" },
		{ "sqlite://rel.db", "rel.db" },
		{ "/plain/x.db", "/plain/x.db" },
		{ "x.db", "x.db" },
	};
	char *p;
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(source_sqlite_path_from_url(ok[i].url, &p), AL_OK);
		assert_string_equal(p, ok[i].path);
		free(p);
	}
	assert_int_equal(source_sqlite_path_from_url("sqlite://", &p), AL_ERR_INVALID);
	assert_int_equal(source_sqlite_path_from_url("sqlite::memory:", &p), AL_ERR_INVALID);
}

static void test_credentials_file(void **state)
{
	struct fx *f = *state;
	char *path = util_path_join(f->dir, "creds.json");
	json_t *c = NULL;

	assert_int_equal(util_write_file_atomic(path, "{\"U\":\"bob\",\"P\":\"s3cret\"}", 24, 0644), AL_OK);
	assert_int_equal(runner_load_credentials(path, &c), AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "chmod 600"));
	assert_null(c);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(runner_load_credentials(path, &c), AL_OK);
	assert_string_equal(json_string_value(json_object_get(c, "P")), "s3cret");
	runner_credentials_free(c);
	assert_int_equal(util_write_file_atomic(path, "{\"P\": 5}", 8, 0400), AL_OK);
	assert_int_equal(runner_load_credentials(path, &c), AL_ERR_INVALID);
	assert_int_equal(util_write_file_atomic(path, "not json s3cret", 15, 0400), AL_OK);
	assert_int_equal(runner_load_credentials(path, &c), AL_ERR_INVALID);
	assert_null(strstr(al_error_message(), "s3cret"));
	free(path);
}

static void test_load_datasource_yaml(void **state)
{
	struct fx *f = *state;
	char *path = util_path_join(f->dir, "ds.yaml");
	const char *yaml = "apiVersion: xlscsde.nhs.uk/v1\nkind: AnalyticsWorkspaceDataSource\n"
			   "metadata:\n  name: x\nspec:\n  type: Import\n  objects:\n  - table:\n      name: t\n"
			   "      connection: c\n";
	json_t *ds = NULL;
	assert_int_equal(util_write_file_atomic(path, yaml, strlen(yaml), 0644), AL_OK);
	if (runner_load_datasource(path, &ds))
		fail_msg("%s", al_error_message());
	assert_string_equal(resource_string_at(ds, "spec.type"), "Import");
	assert_true(json_is_array(json_object_get(json_object_get(ds, "spec"), "objects")));
	json_decref(ds);
	free(path);
}

static void test_source_list(void **state)
{
	struct buf b;
	struct source_list l;
	char name[16];
	(void)state;

	buf_init(&b, 1 << 16);
	source_list_init(&l, &b);
	assert_int_equal(source_list_end(&l, 0), AL_OK);
	assert_string_equal(b.ptr, "(none)");

	buf_reset(&b);
	source_list_init(&l, &b);
	assert_int_equal(source_list_add(&l, "a"), AL_OK);
	assert_int_equal(source_list_add(&l, "b"), AL_OK);
	assert_int_equal(source_list_end(&l, 0), AL_OK);
	assert_string_equal(b.ptr, "a, b");

	/* 42 names: 30 shown, the rest counted. */
	buf_reset(&b);
	source_list_init(&l, &b);
	for (int i = 0; i < 42; i++) {
		snprintf(name, sizeof(name), "t%d", i);
		assert_int_equal(source_list_add(&l, name), AL_OK);
	}
	assert_int_equal(source_list_end(&l, 0), AL_OK);
	assert_non_null(strstr(b.ptr, "t29 and 12 more"));
	assert_null(strstr(b.ptr, "t30"));

	/* A total from the server beyond what was fetched. */
	buf_reset(&b);
	source_list_init(&l, &b);
	assert_int_equal(source_list_add(&l, "x"), AL_OK);
	assert_int_equal(source_list_end(&l, 5), AL_OK);
	assert_string_equal(b.ptr, "x and 4 more");

	/* Long names stop at the byte bound. */
	buf_reset(&b);
	source_list_init(&l, &b);
	char long_name[201];
	memset(long_name, 'n', 200);
	long_name[200] = '\0';
	for (int i = 0; i < 10; i++)
		assert_int_equal(source_list_add(&l, long_name), AL_OK);
	assert_int_equal(source_list_end(&l, 0), AL_OK);
	assert_true(b.len < SOURCE_LIST_BYTES + 220);
	assert_non_null(strstr(b.ptr, "and 7 more"));
	buf_free(&b);
}

static int progress_calls;
static uint64_t progress_last;

static void count_progress(void *ctx, const char *object, uint64_t count)
{
	(void)ctx;
	assert_string_equal(object, "t");
	progress_calls++;
	progress_last = count;
}

static void test_source_progress(void **state)
{
	struct source_progress p;
	(void)state;

	/* No callback: nothing, and no crash. */
	source_progress_init(&p, NULL, NULL, "t");
	source_progress_rows(&p, SOURCE_PROGRESS_EVERY_ROWS);
	source_progress_tick(&p, 1);

	progress_calls = 0;
	source_progress_init(&p, count_progress, NULL, "t");
	source_progress_tick(&p, 10); /* less than a second since init */
	assert_int_equal(progress_calls, 0);
	p.last -= SOURCE_PROGRESS_INTERVAL_MS; /* a second has passed */
	source_progress_rows(&p, SOURCE_PROGRESS_EVERY_ROWS - 1); /* not a multiple: the clock is not read */
	assert_int_equal(progress_calls, 0);
	source_progress_rows(&p, SOURCE_PROGRESS_EVERY_ROWS);
	assert_int_equal(progress_calls, 1);
	assert_int_equal(progress_last, SOURCE_PROGRESS_EVERY_ROWS);
	source_progress_rows(&p, 2 * SOURCE_PROGRESS_EVERY_ROWS); /* just reported */
	assert_int_equal(progress_calls, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_export_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_connection_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_utf8_fails_cleanly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spec_errors, setup, teardown),
		cmocka_unit_test(test_url_forms),
		cmocka_unit_test(test_source_list),
		cmocka_unit_test(test_source_progress),
		cmocka_unit_test_setup_teardown(test_credentials_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_datasource_yaml, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
