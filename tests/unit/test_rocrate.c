/* Unit tests for src/rocrate: manifest digest and RO-Crate metadata. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "rocrate/manifest.h"
#include "rocrate/rocrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(const char *dir, const char *rel, const char *content)
{
	char *p = util_path_join(dir, rel);
	assert_int_equal(util_write_file_atomic(p, content, strlen(content), 0644), AL_OK);
	free(p);
}

static int setup(void **state)
{
	char *dir = strdup("/tmp/test_rocrate.XXXXXX"), *sub;
	assert_non_null(mkdtemp(dir));
	sub = util_path_join(dir, "sub");
	assert_int_equal(mkdir(sub, 0755), 0);
	free(sub);
	sub = util_path_join(dir, ".dir");
	assert_int_equal(mkdir(sub, 0755), 0);
	free(sub);
	put(dir, "a.txt", "hello\n");
	put(dir, "sub/b.csv", "x,y\r\n1,\"two\nlines\"\r\n");
	put(dir, ".hidden", "zzz");
	put(dir, ".dir/c", "q");
	*state = dir;
	return 0;
}

static int teardown(void **state)
{
	util_remove_tree(*state);
	free(*state);
	return 0;
}

static void test_manifest_known_answer(void **state)
{
	const char *dir = *state;
	json_t *m = NULL, *files;
	char again[65];

	if (manifest_build(dir, &m))
		fail_msg("%s", al_error_message());
	files = json_object_get(m, "files");
	assert_int_equal(json_array_size(files), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "path")), "a.txt");
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "sha256")),
			    "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(files, 0), "size")), 6);
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "path")), "sub/b.csv");
	assert_int_equal(json_integer_value(json_object_get(m, "fileCount")), 2);
	assert_int_equal(json_integer_value(json_object_get(m, "totalBytes")), 26);
	/* sha256 of "<sha>  6  a.txt\n<sha>  20  sub/b.csv\n" (computed with sha256sum) */
	assert_string_equal(json_string_value(json_object_get(m, "digest")),
			    "ee316d4e3ae2bc26a3ebd7fce66bfd474bd6039ad7e8041c687fd129dc7c3cca");
	assert_int_equal(manifest_digest(files, again), AL_OK);
	assert_string_equal(again, json_string_value(json_object_get(m, "digest")));
	json_decref(m);
}

/* A digest the writer computed is taken while the file has its size;
 * otherwise the file is read. */
static void test_manifest_known_digests(void **state)
{
	const char *dir = *state;
	const char *fake = "0000000000000000000000000000000000000000000000000000000000000000";
	json_t *known = json_pack("{s:{s:i, s:s}, s:{s:i, s:s}}", "a.txt", "size", 6, "sha256", fake, "sub/b.csv",
				  "size", 999, "sha256", fake);
	json_t *m = NULL, *files;

	assert_int_equal(manifest_build_known(dir, known, &m), AL_OK);
	files = json_object_get(m, "files");
	assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "sha256")), fake);
	assert_string_not_equal(json_string_value(json_object_get(json_array_get(files, 1), "sha256")), fake);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(files, 1), "size")), 20);
	json_decref(m);
	json_decref(known);
}

static void test_manifest_empty_and_changes(void **state)
{
	const char *dir = *state;
	char *empty = util_path_join(dir, "sub/empty");
	json_t *m = NULL, *m2 = NULL;

	assert_int_equal(mkdir(empty, 0755), 0);
	assert_int_equal(manifest_build(empty, &m), AL_OK);
	assert_string_equal(json_string_value(json_object_get(m, "digest")),
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	json_decref(m);
	assert_int_equal(manifest_build(dir, &m), AL_OK);
	put(dir, "a.txt", "hellO\n"); /* same size, one byte differs */
	assert_int_equal(manifest_build(dir, &m2), AL_OK);
	assert_string_not_equal(json_string_value(json_object_get(m, "digest")),
				json_string_value(json_object_get(m2, "digest")));
	json_decref(m);
	json_decref(m2);
	free(empty);
}

static void test_manifest_refuses_links_and_fifos(void **state)
{
	const char *dir = *state;
	char *link = util_path_join(dir, "sub/link"), *fifo = util_path_join(dir, "fifo");
	json_t *m = NULL;

	assert_int_equal(symlink("/etc/passwd", link), 0);
	assert_int_equal(manifest_build(dir, &m), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "sub/link is a symbolic link"));
	assert_null(m);
	unlink(link);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(manifest_build(dir, &m), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "fifo is not a regular file"));
	unlink(fifo);
	assert_int_equal(manifest_build("/nonexistent/dir", &m), AL_ERR_NOT_FOUND);
	free(link);
	free(fifo);
}

static json_t *entity(json_t *crate, const char *id)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(crate, "@graph"), i, e)
		if (!strcmp(json_string_value(json_object_get(e, "@id")), id))
			return e;
	fail_msg("no entity %s", id);
	return NULL;
}

static void test_metadata_fields_and_no_secrets(void **state)
{
	const char *dir = *state;
	json_t *ds = json_loads(
		"{\"apiVersion\":\"xlscsde.nhs.uk/v1\",\"kind\":\"AnalyticsWorkspaceDataSource\","
		"\"metadata\":{\"name\":\"ds\"},\"spec\":{\"type\":\"Import\","
		"\"publisher\":{\"organisation\":\"NHS GM ICB\",\"contact\":{\"name\":\"Shaun Turner\",\"role\":\"AWMS Developer\"}},"
		"\"project\":{\"id\":\"d4e6\"},\"displayName\":\"GM Attendances\",\"description\":\"Two tables\\n\","
		"\"license\":\"Testing only\\n\",\"connections\":[{\"type\":\"postgresql\",\"name\":\"pg\","
		"\"url\":\"postgresql://u:TOPSECRET@db.example/gm\",\"credentials\":{\"userKey\":\"PgUser\","
		"\"passwordKey\":\"PgPasswordKEYNAME\"}}],\"objects\":[{\"table\":{\"name\":\"a\",\"connection\":\"pg\"}}]}}",
		0, NULL);
	json_t *extra = json_pack("{s:[s]}", "airlock:tables", "a");
	struct rocrate_action a = { .runner_name = "airlock-native-runner", .runner_version = "9.9",
				    .start_time = "2026-01-01T00:00:00.000Z", .end_time = "2026-01-01T00:00:01.000Z",
				    .succeeded = 1, .source_name = "postgresql database gm",
				    .source_description = "db.example/gm", .source_extra = extra };
	json_t *crate = NULL, *root, *f, *act;
	char *text, *text2, *path;
	size_t len;

	assert_non_null(ds);
	if (rocrate_build(dir, ds, &a, NULL, "2026-01-02T00:00:00Z", &crate))
		fail_msg("%s", al_error_message());
	assert_string_equal(json_string_value(json_array_get(json_object_get(crate, "@context"), 0)),
			    "https://w3id.org/ro/crate/1.1/context");
	root = entity(crate, "./");
	assert_string_equal(json_string_value(json_object_get(root, "@type")), "Dataset");
	assert_string_equal(json_string_value(json_object_get(root, "name")), "GM Attendances");
	assert_string_equal(json_string_value(json_object_get(root, "description")), "Two tables");
	assert_string_equal(json_string_value(json_object_get(root, "datePublished")), "2026-01-02T00:00:00Z");
	assert_int_equal(json_array_size(json_object_get(root, "hasPart")), 2);
	assert_string_equal(json_string_value(json_object_get(entity(crate, "#license"), "description")),
			    "Testing only");
	assert_string_equal(json_string_value(json_object_get(entity(crate, "#publisher"), "name")), "NHS GM ICB");
	assert_string_equal(json_string_value(json_object_get(entity(crate, "#contact"), "contactType")),
			    "AWMS Developer");
	assert_string_equal(json_string_value(json_object_get(entity(crate, "#project-d4e6"), "identifier")), "d4e6");
	assert_string_equal(json_string_value(json_object_get(entity(crate, "ro-crate-metadata.json"), "@type")),
			    "CreativeWork");
	f = entity(crate, "sub/b.csv");
	assert_string_equal(json_string_value(json_object_get(f, "encodingFormat")), "text/csv");
	assert_string_equal(json_string_value(json_object_get(f, "contentSize")), "20");
	assert_int_equal(json_integer_value(json_object_get(f, "airlock:rowCount")), 1); /* quoted newline */
	assert_string_equal(json_string_value(json_array_get(json_object_get(f, "airlock:columns"), 1)), "y");
	f = entity(crate, "a.txt");
	assert_string_equal(json_string_value(json_object_get(f, "encodingFormat")), "text/plain");
	assert_null(json_object_get(f, "airlock:rowCount"));
	act = entity(crate, "#collection-2026-01-01T00:00:00.000Z");
	assert_string_equal(json_string_value(json_object_get(act, "actionStatus")), "CompletedActionStatus");
	assert_string_equal(json_string_value(json_object_get(entity(crate, "#runner"), "version")), "9.9");
	/* No secrets, no connection details beyond what the caller described. */
	text = json_dumps(crate, JSON_SORT_KEYS);
	assert_null(strstr(text, "TOPSECRET"));
	assert_null(strstr(text, "PgPasswordKEYNAME"));
	assert_null(strstr(text, "postgresql://"));
	json_decref(crate);
	/* Deterministic. */
	assert_int_equal(rocrate_build(dir, ds, &a, NULL, "2026-01-02T00:00:00Z", &crate), AL_OK);
	text2 = json_dumps(crate, JSON_SORT_KEYS);
	assert_string_equal(text, text2);
	free(text);
	free(text2);
	json_decref(crate);
	/* Written file; building again does not list the metadata itself. */
	assert_int_equal(rocrate_write(dir, ds, &a, NULL), AL_OK);
	assert_int_equal(rocrate_write(dir, ds, &a, NULL), AL_OK);
	path = util_path_join(dir, "ro-crate-metadata.json");
	assert_int_equal(util_read_file(path, 1 << 20, &text, &len), AL_OK);
	crate = json_loads(text, 0, NULL);
	assert_non_null(crate);
	assert_int_equal(json_array_size(json_object_get(entity(crate, "./"), "hasPart")), 2);
	assert_null(strstr(text, "TOPSECRET"));
	free(text);
	free(path);
	json_decref(crate);
	json_decref(extra);
	json_decref(ds);
}

static void test_no_datasource_and_escaping(void **state)
{
	const char *dir = *state;
	json_t *crate = NULL, *root;

	put(dir, "sub/with space%.bin", "x");
	assert_int_equal(rocrate_build(dir, NULL, NULL, NULL, NULL, &crate), AL_OK);
	root = entity(crate, "./");
	assert_non_null(json_string_value(json_object_get(root, "name")));
	assert_null(json_object_get(root, "license"));
	assert_string_equal(json_string_value(json_object_get(entity(crate, "sub/with%20space%25.bin"),
							      "encodingFormat")),
			    "application/octet-stream");
	json_decref(crate);
	assert_string_equal(rocrate_media_type("x/Y.CSV"), "text/csv");
	assert_string_equal(rocrate_media_type("noext"), "application/octet-stream");
	assert_string_equal(rocrate_media_type(".csv/x"), "application/octet-stream");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_manifest_known_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manifest_empty_and_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manifest_known_digests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_manifest_refuses_links_and_fifos, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metadata_fields_and_no_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_datasource_and_escaping, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
