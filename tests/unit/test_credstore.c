/* Tests for auth/credstore: encrypted source-system credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/credstore.h"
#include "common/error.h"
#include "common/util.h"

#define MARKER "s3cr3t-Databricks-VALUE-7f3a91"

struct fixture {
	char dir[64];
	char *db;
	char *key;
	struct credstore *cs;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/airlock-credstore-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->db = util_path_join(f->dir, "airlock.db");
	f->key = util_path_join(f->dir, "keys/credentials.key");
	assert_int_equal(credstore_open(&f->cs, f->db, f->key), AL_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	credstore_close(f->cs);
	util_remove_tree(f->dir);
	free(f->db);
	free(f->key);
	free(f);
	return 0;
}

/* Does `needle` occur in the file (missing file: no)? */
static int file_contains(const char *path, const char *needle)
{
	char *data = NULL;
	size_t len = 0;
	int found;
	if (util_read_file(path, 256 << 20, &data, &len) != AL_OK)
		return 0;
	found = memmem(data, len, needle, strlen(needle)) != NULL;
	free(data);
	return found;
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	char *v = NULL;
	json_t *keys = NULL;
	char *dump;

	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(credstore_set(f->cs, "DatabricksPassword", MARKER), AL_OK);
	assert_int_equal(credstore_set(f->cs, "DatabricksUsername", "svc-airlock"), AL_OK);
	assert_int_equal(credstore_set(f->cs, "empty", ""), AL_OK);
	assert_int_equal(credstore_set(f->cs, "unicode.key_1-x", "p\xc3\xa4ss w\xc3\xb6rd"), AL_OK);

	assert_int_equal(credstore_get(f->cs, "DatabricksPassword", &v), AL_OK);
	assert_string_equal(v, MARKER);
	credstore_value_free(v);
	assert_int_equal(credstore_get(f->cs, "empty", &v), AL_OK);
	assert_string_equal(v, "");
	credstore_value_free(v);
	assert_int_equal(credstore_get(f->cs, "unicode.key_1-x", &v), AL_OK);
	assert_string_equal(v, "p\xc3\xa4ss w\xc3\xb6rd");
	credstore_value_free(v);

	/* replace */
	assert_int_equal(credstore_set(f->cs, "DatabricksUsername", "svc-other"), AL_OK);
	assert_int_equal(credstore_get(f->cs, "DatabricksUsername", &v), AL_OK);
	assert_string_equal(v, "svc-other");
	credstore_value_free(v);

	assert_int_equal(credstore_list_keys(f->cs, &keys), AL_OK);
	assert_int_equal(json_array_size(keys), 4);
	assert_string_equal(json_string_value(json_array_get(keys, 0)), "DatabricksPassword");
	assert_string_equal(json_string_value(json_array_get(keys, 3)), "unicode.key_1-x");
	dump = json_dumps(keys, 0);
	assert_null(strstr(dump, MARKER));
	free(dump);
	json_decref(keys);

	assert_int_equal(credstore_get(f->cs, "Missing", &v), AL_ERR_NOT_FOUND);
	assert_null(v);
	assert_int_equal(credstore_delete(f->cs, "empty"), AL_OK);
	assert_int_equal(credstore_delete(f->cs, "empty"), AL_ERR_NOT_FOUND);
	assert_int_equal(credstore_get(f->cs, "empty", &v), AL_ERR_NOT_FOUND);

	/* persists, and the same key file opens it again */
	credstore_close(f->cs);
	assert_int_equal(credstore_open(&f->cs, f->db, f->key), AL_OK);
	assert_int_equal(credstore_get(f->cs, "DatabricksPassword", &v), AL_OK);
	assert_string_equal(v, MARKER);
	credstore_value_free(v);
	credstore_value_free(NULL);
}

static void test_validation(void **state)
{
	struct fixture *f = *state;
	char name[300], *big;
	assert_int_equal(credstore_set(f->cs, "", "x"), AL_ERR_INVALID);
	assert_int_equal(credstore_set(f->cs, "has space", "x"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "letters, digits"));
	assert_int_equal(credstore_set(f->cs, "a/b", "x"), AL_ERR_INVALID);
	assert_int_equal(credstore_set(f->cs, "ok", NULL), AL_ERR_INVALID);
	memset(name, 'k', 254);
	name[254] = '\0';
	assert_int_equal(credstore_set(f->cs, name, "x"), AL_ERR_INVALID);
	name[253] = '\0';
	assert_int_equal(credstore_set(f->cs, name, "x"), AL_OK);
	big = malloc(CREDSTORE_VALUE_MAX + 2);
	memset(big, 'v', CREDSTORE_VALUE_MAX + 1);
	big[CREDSTORE_VALUE_MAX + 1] = '\0';
	assert_int_equal(credstore_set(f->cs, "big", big), AL_ERR_TOO_LARGE);
	big[CREDSTORE_VALUE_MAX] = '\0';
	assert_int_equal(credstore_set(f->cs, "big", big), AL_OK);
	free(big);
}

static void test_no_clear_text_on_disk(void **state)
{
	struct fixture *f = *state;
	char *wal = NULL, *keyhex = NULL;
	size_t klen = 0;

	for (int i = 0; i < 20; i++) {
		char k[32];
		snprintf(k, sizeof(k), "key%d", i);
		assert_int_equal(credstore_set(f->cs, k, MARKER), AL_OK);
	}
	assert_int_equal(credstore_delete(f->cs, "key3"), AL_OK);
	assert_true(asprintf(&wal, "%s-wal", f->db) > 0);
	assert_int_equal(util_read_file(f->key, 1024, &keyhex, &klen), AL_OK);
	keyhex[64] = '\0';
	/* while open (data in the WAL) and after close (checkpointed) */
	assert_false(file_contains(f->db, MARKER));
	assert_false(file_contains(wal, MARKER));
	assert_false(file_contains(f->db, "s3cr3t"));
	assert_false(file_contains(wal, keyhex));
	credstore_close(f->cs);
	f->cs = NULL;
	assert_false(file_contains(f->db, MARKER));
	assert_false(file_contains(wal, MARKER));
	assert_false(file_contains(f->db, keyhex));
	assert_true(file_contains(f->db, "key19")); /* the names are there, in clear */
	assert_int_equal(credstore_open(&f->cs, f->db, f->key), AL_OK);
	free(wal);
	free(keyhex);
}

static void test_wrong_key_file(void **state)
{
	struct fixture *f = *state;
	struct credstore *other = NULL;
	char *other_key = util_path_join(f->dir, "other.key");

	assert_int_equal(credstore_set(f->cs, "DatabricksPassword", MARKER), AL_OK);
	assert_int_equal(credstore_open(&other, f->db, other_key), AL_ERR_INVALID);
	assert_null(other);
	assert_non_null(strstr(al_error_message(), "does not match"));
	assert_non_null(strstr(al_error_message(), other_key));

	/* a key file that is not a key */
	assert_int_equal(util_write_file_atomic(other_key, "hello\n", 6, 0600), AL_OK);
	assert_int_equal(credstore_open(&other, f->db, other_key), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "64 hex digits"));
	free(other_key);
}

static void test_permissions(void **state)
{
	struct fixture *f = *state;
	struct credstore *cs = NULL;
	char *link_path = util_path_join(f->dir, "link.key");

	credstore_close(f->cs);
	f->cs = NULL;
	assert_int_equal(chmod(f->key, 0640), 0);
	assert_int_equal(credstore_open(&cs, f->db, f->key), AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "chmod 600"));
	assert_null(cs);
	assert_int_equal(chmod(f->key, 0604), 0);
	assert_int_equal(credstore_open(&cs, f->db, f->key), AL_ERR_FORBIDDEN);
	assert_int_equal(chmod(f->key, 0600), 0);

	assert_int_equal(symlink(f->key, link_path), 0);
	assert_int_equal(credstore_open(&cs, f->db, link_path), AL_ERR_FORBIDDEN);
	assert_non_null(strstr(al_error_message(), "symbolic link"));
	free(link_path);

	assert_int_equal(credstore_open(&f->cs, f->db, f->key), AL_OK);
}

static void rewrite_blob(const char *db, const char *sql, const void *data, int len)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	sqlite3_busy_timeout(h, 5000);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	if (data)
		sqlite3_bind_blob(st, 1, data, len, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(h);
}

static void read_blob(const char *db, const char *sql, unsigned char *out, int *len)
{
	sqlite3 *h;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	*len = sqlite3_column_bytes(st, 0);
	assert_true(*len <= 4096);
	memcpy(out, sqlite3_column_blob(st, 0), (size_t)*len);
	sqlite3_finalize(st);
	sqlite3_close(h);
}

static void test_tampering(void **state)
{
	struct fixture *f = *state;
	unsigned char blob[4096];
	int len = 0;
	char *v = NULL;

	assert_int_equal(credstore_set(f->cs, "A", "value-of-a"), AL_OK);
	assert_int_equal(credstore_set(f->cs, "B", "value-of-b"), AL_OK);

	/* flip one bit of A's ciphertext */
	read_blob(f->db, "SELECT ciphertext FROM credentials WHERE key = 'A'", blob, &len);
	blob[len - 1] ^= 1;
	rewrite_blob(f->db, "UPDATE credentials SET ciphertext = ?1 WHERE key = 'A'", blob, len);
	assert_int_equal(credstore_get(f->cs, "A", &v), AL_ERR_IO);
	assert_null(v);
	assert_non_null(strstr(al_error_message(), "cannot be decrypted"));
	assert_null(strstr(al_error_message(), "value-of"));

	/* truncated ciphertext */
	rewrite_blob(f->db, "UPDATE credentials SET ciphertext = ?1 WHERE key = 'A'", blob, 5);
	assert_int_equal(credstore_get(f->cs, "A", &v), AL_ERR_IO);

	/* B's row copied onto A: decrypts, but is bound to the name B */
	rewrite_blob(f->db,
		     "UPDATE credentials SET (nonce, ciphertext) = "
		     "(SELECT nonce, ciphertext FROM credentials WHERE key = 'B') WHERE key = 'A'",
		     NULL, 0);
	assert_int_equal(credstore_get(f->cs, "A", &v), AL_ERR_IO);
	assert_non_null(strstr(al_error_message(), "another key"));
	assert_null(v);

	/* B itself is untouched; setting A again repairs it */
	assert_int_equal(credstore_get(f->cs, "B", &v), AL_OK);
	assert_string_equal(v, "value-of-b");
	credstore_value_free(v);
	assert_int_equal(credstore_set(f->cs, "A", "value-of-a2"), AL_OK);
	assert_int_equal(credstore_get(f->cs, "A", &v), AL_OK);
	assert_string_equal(v, "value-of-a2");
	credstore_value_free(v);
}

struct worker {
	struct credstore *cs;
	int id;
	int ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 30; i++) {
		char k[32], val[64], *got = NULL;
		snprintf(k, sizeof(k), "w%d-%d", w->id, i % 5);
		snprintf(val, sizeof(val), "value %d %d", w->id, i);
		if (credstore_set(w->cs, k, val) == AL_OK && credstore_get(w->cs, k, &got) == AL_OK &&
		    !strcmp(got, val))
			w->ok++;
		credstore_value_free(got);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fixture *f = *state;
	struct worker w[4];
	pthread_t t[4];
	json_t *keys = NULL;
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ f->cs, i, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 30);
	}
	assert_int_equal(credstore_list_keys(f->cs, &keys), AL_OK);
	assert_int_equal(json_array_size(keys), 20);
	json_decref(keys);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_clear_text_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
