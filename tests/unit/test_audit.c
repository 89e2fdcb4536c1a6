/* Unit tests for the hash-chained audit record format (src/audit). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "common/error.h"
#include "common/util.h"

/* A sealed chain of n records, as the store would write it. */
static json_t *make_chain(size_t n)
{
	json_t *arr = json_array();
	char prev[UTIL_SHA256_HEX_LEN + 1] = AUDIT_GENESIS_HASH;

	assert_non_null(arr);
	for (size_t i = 0; i < n; i++) {
		json_t *obj = json_pack("{s:s, s:s, s:s, s:s}", "kind", "AnalyticsWorkspaceDataSource",
					"namespace", "default", "name", "ds", "uid", "u-1");
		char reason[32];
		json_t *e;
		snprintf(reason, sizeof(reason), "step %zu", i + 1);
		e = audit_entry_new(i % 2 ? "user" : "system", i % 2 ? "alice" : "airlock-operator",
				    "transition", obj, "ingress", "review", "Pending", "Ready",
				    "sha256:abc", reason);
		json_decref(obj);
		assert_non_null(e);
		assert_int_equal(audit_seal(e, i + 1, prev), AL_OK);
		memcpy(prev, json_string_value(json_object_get(e, "hash")), sizeof(prev));
		assert_int_equal(json_array_append_new(arr, e), 0);
	}
	return arr;
}

static void expect_fail(const json_t *records, const char *msg_part, uint64_t good)
{
	uint64_t count = 99;
	int rc = audit_verify_records(records, &count);
	assert_int_equal(rc, AL_ERR_INVALID);
	if (!strstr(al_error_message(), msg_part))
		fail_msg("message \"%s\" lacks \"%s\"", al_error_message(), msg_part);
	assert_int_equal(count, good);
}

static void test_entry_new_and_seal(void **state)
{
	json_t *e = audit_entry_new("system", "airlock-operator", "create", NULL, NULL, NULL, NULL,
				    NULL, NULL, NULL);
	char h[UTIL_SHA256_HEX_LEN + 1];

	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(json_object_get(e, "actor"), "type")),
			    "system");
	assert_true(json_is_null(json_object_get(e, "object")));
	assert_true(json_is_null(json_object_get(e, "reason")));
	assert_true(json_is_null(json_object_get(e, "digest")));
	assert_int_equal(audit_seal(e, 1, AUDIT_GENESIS_HASH), AL_OK);
	assert_int_equal(json_integer_value(json_object_get(e, "seq")), 1);
	assert_string_equal(json_string_value(json_object_get(e, "prev")), AUDIT_GENESIS_HASH);
	assert_true(json_is_string(json_object_get(e, "time")));
	assert_int_equal(audit_hash(e, h), AL_OK);
	assert_string_equal(h, json_string_value(json_object_get(e, "hash")));
	/* Bad arguments. */
	assert_int_equal(audit_seal(e, 0, AUDIT_GENESIS_HASH), AL_ERR_INVALID);
	assert_int_equal(audit_seal(e, 2, "zz"), AL_ERR_INVALID);
	json_decref(e);
}

static void test_hash_ignores_key_order(void **state)
{
	json_t *a = json_loads("{\"seq\":1,\"b\":\"x\",\"a\":{\"z\":1,\"y\":\"\\u00e9\"},\"prev\":\"p\",\"hash\":\"h\"}", 0, NULL);
	json_t *b = json_loads("{\"a\":{\"y\":\"é\",\"z\":1},\"prev\":\"p\",\"b\":\"x\",\"seq\":1,\"hash\":\"other\"}", 0, NULL);
	char ha[UTIL_SHA256_HEX_LEN + 1], hb[UTIL_SHA256_HEX_LEN + 1];

	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(audit_hash(a, ha), AL_OK);
	assert_int_equal(audit_hash(b, hb), AL_OK);
	assert_string_equal(ha, hb);
	json_decref(a);
	json_decref(b);
}

static void test_good_chain(void **state)
{
	json_t *c = make_chain(6);
	uint64_t count = 0;
	assert_int_equal(audit_verify_records(c, &count), AL_OK);
	assert_int_equal(count, 6);
	/* Round trip through text, as an export would. */
	for (size_t i = 0; i < json_array_size(c); i++) {
		char *line = json_dumps(json_array_get(c, i), JSON_COMPACT);
		json_t *r = NULL;
		assert_int_equal(audit_parse_line(line, strlen(line), &r), AL_OK);
		assert_true(json_equal(r, json_array_get(c, i)));
		json_decref(r);
		free(line);
	}
	json_decref(c);
	json_t *empty = json_array();
	assert_int_equal(audit_verify_records(empty, &count), AL_OK);
	assert_int_equal(count, 0);
	json_decref(empty);
}

static void test_edited_record(void **state)
{
	json_t *c = make_chain(5);
	json_object_set_new(json_array_get(c, 2), "reason", json_string("nothing to see"));
	expect_fail(c, "record 3: content does not match its hash (edited)", 2);
	json_decref(c);

	/* Editing the actor of the first record. */
	c = make_chain(3);
	json_object_set_new(json_object_get(json_array_get(c, 0), "actor"), "name",
			    json_string("mallory"));
	expect_fail(c, "record 1: content does not match its hash (edited)", 0);
	json_decref(c);
}

static void test_removed_record(void **state)
{
	json_t *c = make_chain(5);
	json_array_remove(c, 2); /* seq 3 */
	expect_fail(c, "record(s) 3..3 missing (removed)", 2);
	json_decref(c);

	c = make_chain(5);
	json_array_remove(c, 0);
	expect_fail(c, "record(s) 1..1 missing (removed)", 0);
	json_decref(c);

	c = make_chain(6);
	json_array_remove(c, 2);
	json_array_remove(c, 2); /* seq 3 and 4 */
	expect_fail(c, "record(s) 3..4 missing", 2);
	json_decref(c);
}

static void test_swapped_and_duplicated(void **state)
{
	json_t *c = make_chain(5);
	json_t *r2 = json_incref(json_array_get(c, 1));
	json_t *r3 = json_incref(json_array_get(c, 2));
	json_array_set_new(c, 1, r3);
	json_array_set_new(c, 2, r2);
	expect_fail(c, "record 3: expected seq 2", 1);
	json_decref(c);

	c = make_chain(4);
	json_array_insert(c, 2, json_array_get(c, 1)); /* 1,2,2,3,4 */
	expect_fail(c, "record 2: expected seq 3 (reordered or duplicated)", 2);
	json_decref(c);
}

static void test_forged_record(void **state)
{
	char h[UTIL_SHA256_HEX_LEN + 1];
	json_t *c = make_chain(5);
	json_t *r = json_array_get(c, 2);

	/* Forger edits record 3 and recomputes its hash, but cannot fix record
	 * 4's prev without rewriting the rest of the chain. */
	json_object_set_new(r, "reason", json_string("forged"));
	assert_int_equal(audit_hash(r, h), AL_OK);
	json_object_set_new(r, "hash", json_string(h));
	expect_fail(c, "chain broken before record 4", 3);
	json_decref(c);

	/* A forged record whose own hash is right but whose prev is wrong. */
	c = make_chain(5);
	r = json_array_get(c, 2);
	json_object_set_new(r, "prev", json_string(AUDIT_GENESIS_HASH));
	assert_int_equal(audit_hash(r, h), AL_OK);
	json_object_set_new(r, "hash", json_string(h));
	expect_fail(c, "chain broken before record 3 (a record was removed, inserted or reordered)", 2);
	json_decref(c);
}

static void test_bad_shapes(void **state)
{
	json_t *c = make_chain(2);
	json_array_append_new(c, json_string("x"));
	expect_fail(c, "record 3: not a JSON object", 2);
	json_decref(c);

	c = make_chain(2);
	json_object_del(json_array_get(c, 1), "prev");
	expect_fail(c, "record 2: \"prev\" is missing", 1);
	json_decref(c);

	c = json_object();
	assert_int_equal(audit_verify_records(c, NULL), AL_ERR_INVALID);
	json_decref(c);
}

static void expect_parse_error(const char *line, int code, const char *part)
{
	json_t *r = (json_t *)1;
	assert_int_equal(audit_parse_line(line, strlen(line), &r), code);
	assert_null(r);
	if (part && !strstr(al_error_message(), part))
		fail_msg("message \"%s\" lacks \"%s\"", al_error_message(), part);
}

static void test_parse_line(void **state)
{
	json_t *r = NULL;
	const char *ok = "{\"seq\":1,\"prev\":\"a\",\"hash\":\"b\"}\r\n";
	char *big;

	assert_int_equal(audit_parse_line(ok, strlen(ok), &r), AL_OK);
	json_decref(r);
	expect_parse_error("", AL_ERR_INVALID, "empty");
	expect_parse_error("\n", AL_ERR_INVALID, "empty");
	expect_parse_error("not json", AL_ERR_INVALID, "not valid JSON");
	expect_parse_error("[1,2]", AL_ERR_INVALID, "not a JSON object");
	expect_parse_error("{\"prev\":\"a\",\"hash\":\"b\"}", AL_ERR_INVALID, "\"seq\"");
	expect_parse_error("{\"seq\":\"1\",\"prev\":\"a\",\"hash\":\"b\"}", AL_ERR_INVALID, "\"seq\"");
	expect_parse_error("{\"seq\":0,\"prev\":\"a\",\"hash\":\"b\"}", AL_ERR_INVALID, "1 or more");
	expect_parse_error("{\"seq\":1,\"prev\":2,\"hash\":\"b\"}", AL_ERR_INVALID, "\"prev\"");
	expect_parse_error("{\"seq\":1,\"prev\":\"a\"}", AL_ERR_INVALID, "\"hash\"");
	expect_parse_error("{\"seq\":1,\"seq\":2,\"prev\":\"a\",\"hash\":\"b\"}", AL_ERR_INVALID,
			   "not valid JSON");
	expect_parse_error("{\"seq\":1,\"prev\":\"a\",\"hash\":\"b\"} {}", AL_ERR_INVALID,
			   "not valid JSON");
	/* Embedded NUL: the length, not the terminator, bounds the line. */
	assert_int_equal(audit_parse_line("{\"seq\":1}\0{}", 12, &r), AL_ERR_INVALID);
	assert_null(r);

	big = malloc(AUDIT_LINE_MAX + 2);
	assert_non_null(big);
	memset(big, ' ', AUDIT_LINE_MAX + 1);
	big[AUDIT_LINE_MAX + 1] = '\0';
	assert_int_equal(audit_parse_line(big, AUDIT_LINE_MAX + 1, &r), AL_ERR_TOO_LARGE);
	assert_null(r);
	free(big);
}

static char *write_chain_file(const char *dir, const char *name, const json_t *c)
{
	char *path = util_path_join(dir, name);
	FILE *f;
	assert_non_null(path);
	f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < json_array_size(c); i++) {
		char *line = json_dumps(json_array_get(c, i), JSON_COMPACT);
		fprintf(f, "%s\n", line);
		free(line);
	}
	fprintf(f, "\n");
	fclose(f);
	return path;
}

static void test_verify_file(void **state)
{
	char dir[] = "/tmp/test_audit.XXXXXX";
	json_t *c = make_chain(4);
	uint64_t count = 0;
	char *good, *bad;

	assert_non_null(mkdtemp(dir));
	good = write_chain_file(dir, "good.jsonl", c);
	assert_int_equal(audit_verify_file(good, &count), AL_OK);
	assert_int_equal(count, 4);

	json_object_set_new(json_array_get(c, 3), "action", json_string("approve"));
	bad = write_chain_file(dir, "bad.jsonl", c);
	assert_int_equal(audit_verify_file(bad, &count), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "bad.jsonl:4: record 4: content does not match"));
	assert_int_equal(count, 3);

	assert_int_equal(audit_verify_file("/nonexistent/x.jsonl", &count), AL_ERR_IO);
	free(good);
	free(bad);
	json_decref(c);
	assert_int_equal(util_remove_tree(dir), AL_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_new_and_seal),
		cmocka_unit_test(test_hash_ignores_key_order),
		cmocka_unit_test(test_good_chain),
		cmocka_unit_test(test_edited_record),
		cmocka_unit_test(test_removed_record),
		cmocka_unit_test(test_swapped_and_duplicated),
		cmocka_unit_test(test_forged_record),
		cmocka_unit_test(test_bad_shapes),
		cmocka_unit_test(test_parse_line),
		cmocka_unit_test(test_verify_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
