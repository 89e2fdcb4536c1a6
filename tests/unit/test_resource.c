/*
 * Tests of src/resource: the YAML converter, the fixtures shared with
 * tests/e2e/test_crd_schema.py (every valid one must pass, every invalid one
 * must fail with the message its "# expect:" line names), and that the
 * embedded schemas are exactly the CRDs in deploy/crds/.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/error.h"
#include "common/util.h"
#include "resource/resource.h"
#include "resource/schema.h"
#include "resource/yamljson.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *fixtures_dir(void)
{
	const char *d = getenv("AIRLOCK_FIXTURES");
	return d && *d ? d : "tests/fixtures";
}

static json_t *parse_ok(const char *text)
{
	json_t *v = NULL;
	int rc = resource_parse(text, strlen(text), &v);
	if (rc < 0)
		fail_msg("parse failed: %s\n%s", al_error_message(), text);
	return v;
}

static void parse_fails(const char *text, const char *expect)
{
	json_t *v = NULL;
	int rc = resource_parse(text, strlen(text), &v);
	if (rc >= 0) {
		json_decref(v);
		fail_msg("parse should have failed: %s", text);
	}
	if (!strstr(al_error_message(), expect))
		fail_msg("error '%s' does not contain '%s'", al_error_message(), expect);
	assert_null(v);
}

/* ---- YAML converter ---- */

static void test_yaml_scalar_types(void **state)
{
	json_t *v = parse_ok("a: 1\nb: -2\nc: 0x1F\nd: 0o17\ne: 1.5\nf: true\ng: False\nh: null\n"
			     "i: ~\nj:\nk: \"1\"\nl: 'true'\nm: yes\nn: 2024-01-02\no: 1e3\np: .5\n"
			     "q: +7\nr: 0755\ns: !!str 12\nt: 1_000\n");
	(void)state;
	assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
	assert_int_equal(json_integer_value(json_object_get(v, "b")), -2);
	assert_int_equal(json_integer_value(json_object_get(v, "c")), 31);
	assert_int_equal(json_integer_value(json_object_get(v, "d")), 15);
	assert_true(json_is_real(json_object_get(v, "e")));
	assert_true(json_is_true(json_object_get(v, "f")));
	assert_true(json_is_false(json_object_get(v, "g")));
	assert_true(json_is_null(json_object_get(v, "h")));
	assert_true(json_is_null(json_object_get(v, "i")));
	assert_true(json_is_null(json_object_get(v, "j")));
	assert_string_equal(json_string_value(json_object_get(v, "k")), "1");
	assert_string_equal(json_string_value(json_object_get(v, "l")), "true");
	/* YAML 1.2: yes and dates are strings */
	assert_string_equal(json_string_value(json_object_get(v, "m")), "yes");
	assert_string_equal(json_string_value(json_object_get(v, "n")), "2024-01-02");
	assert_true(json_is_real(json_object_get(v, "o")));
	assert_true(json_is_real(json_object_get(v, "p")));
	assert_int_equal(json_integer_value(json_object_get(v, "q")), 7);
	assert_int_equal(json_integer_value(json_object_get(v, "r")), 755);
	assert_string_equal(json_string_value(json_object_get(v, "s")), "12");
	assert_string_equal(json_string_value(json_object_get(v, "t")), "1_000");
	json_decref(v);
}

static void test_yaml_block_scalars(void **state)
{
	json_t *v = parse_ok("lit: |\n  line one\n  line two\n\n  after blank\nfold: >\n  a\n  b\n"
			     "strip: |-\n  x\n");
	(void)state;
	assert_string_equal(json_string_value(json_object_get(v, "lit")),
			    "line one\nline two\n\nafter blank\n");
	assert_string_equal(json_string_value(json_object_get(v, "fold")), "a b\n");
	assert_string_equal(json_string_value(json_object_get(v, "strip")), "x");
	json_decref(v);
}

static void test_yaml_json_input(void **state)
{
	json_t *v = parse_ok("{\"a\": [1, 2.5, \"x\", null, true], \"b\": {\"c\": \"\\u00e9\\n\"}, \"d\":3}");
	(void)state;
	assert_int_equal(json_array_size(json_object_get(v, "a")), 5);
	assert_string_equal(json_string_value(json_object_get(json_object_get(v, "b"), "c")), "\xc3\xa9\n");
	assert_int_equal(json_integer_value(json_object_get(v, "d")), 3);
	json_decref(v);
}

static void test_yaml_refusals(void **state)
{
	char *deep;
	(void)state;
	parse_fails("a: &x 1\nb: *x\n", "anchors");
	parse_fails("a: [1]\nb: *x\n", "line 2");
	parse_fails("a: 1\nb: 2\na: 3\n", "line 3, column 1: duplicate key a");
	parse_fails("? [1, 2]\n: x\n", "mapping keys must be strings");
	parse_fails("1: x\n", "mapping keys must be strings");
	parse_fails("a: .inf\n", "infinity");
	parse_fails("a: 99999999999999999999\n", "out of range");
	parse_fails("a: 1e999\n", "out of range");
	parse_fails("a: !custom x\n", "unsupported tag");
	parse_fails("a: !!int x\n", "does not match its tag");
	parse_fails("a: \"x\\0y\"\n", "NUL");
	parse_fails("a: b: c\n", "line 1, column 5");
	parse_fails("a: [1, 2\n", "line 2");
	parse_fails("", "empty");
	parse_fails("a: 1\n---\nb: 2\n", "2 documents");

	/* depth: 64 levels are fine, 65 are not */
	deep = calloc(1, 200);
	assert_non_null(deep);
	memset(deep, '[', 64);
	memset(deep + 64, ']', 64);
	{
		json_t *v = parse_ok(deep);
		json_decref(v);
	}
	memset(deep, '[', 65);
	memset(deep + 65, ']', 65);
	parse_fails(deep, "nested too deeply");
	free(deep);
}

static void test_yaml_billion_laughs(void **state)
{
	const char *bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
			   "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
			   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
			   "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n";
	(void)state;
	parse_fails(bomb, "not allowed");
}

static void test_yaml_size_cap(void **state)
{
	size_t n = RESOURCE_MAX_DOCUMENT + 1;
	char *big = malloc(n + 1);
	json_t *v = NULL;
	(void)state;
	assert_non_null(big);
	memset(big, ' ', n);
	big[0] = '#';
	big[n] = '\0';
	assert_int_equal(resource_parse(big, n, &v), AL_ERR_TOO_LARGE);
	free(big);
}

static void test_parse_all(void **state)
{
	const char *text = "---\na: 1\n---\n---\nb: 2\n...\n---\n- x\n";
	json_t *docs = NULL;
	(void)state;
	assert_int_equal(resource_parse_all(text, strlen(text), &docs), AL_OK);
	assert_int_equal(json_array_size(docs), 3);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(docs, 1), "b")), 2);
	json_decref(docs);
	assert_int_equal(resource_parse_all("", 0, &docs), AL_OK);
	assert_int_equal(json_array_size(docs), 0);
	json_decref(docs);
}

/* ---- kinds, names, accessors ---- */

static void test_kinds(void **state)
{
	enum resource_kind k;
	(void)state;
	assert_int_equal(resource_kind_parse("AnalyticsWorkspaceDataSource", &k), AL_OK);
	assert_int_equal(k, RESOURCE_DATASOURCE);
	assert_int_equal(resource_kind_parse("analyticsworkspacedatabindings", &k), AL_OK);
	assert_int_equal(k, RESOURCE_DATABINDING);
	assert_int_equal(resource_kind_parse("analyticsworkspace", &k), AL_OK);
	assert_int_equal(k, RESOURCE_WORKSPACE);
	assert_int_equal(resource_kind_parse("awb", &k), AL_OK);
	assert_int_equal(k, RESOURCE_WORKSPACE_BINDING);
	assert_int_equal(resource_kind_parse("pods", &k), AL_ERR_INVALID);
	assert_string_equal(resource_kind_plural(RESOURCE_DATASOURCE), "analyticsworkspacedatasources");
	assert_string_equal(resource_kind_name(RESOURCE_WORKSPACE_BINDING), "AnalyticsWorkspaceBinding");
}

static void test_names(void **state)
{
	(void)state;
	assert_true(resource_is_dns_subdomain("a.b-c.d"));
	assert_false(resource_is_dns_subdomain("a..b"));
	assert_false(resource_is_dns_subdomain("-a"));
	assert_false(resource_is_dns_subdomain(""));
	assert_true(resource_is_dns_label("airlock"));
	assert_false(resource_is_dns_label("air.lock"));
	assert_true(resource_is_qualified_name("xlscsde.nhs.uk/type"));
	assert_true(resource_is_qualified_name("Type_1.x"));
	assert_false(resource_is_qualified_name("/type"));
	assert_false(resource_is_qualified_name("a/b/c"));
	assert_false(resource_is_qualified_name("x/"));
	assert_true(resource_is_label_value(""));
	assert_false(resource_is_label_value("a b"));
}

static void test_accessors(void **state)
{
	json_t *v = parse_ok("metadata: {name: n1, namespace: ns}\nspec: {project: {id: d4e6}, n: 1}\n");
	(void)state;
	assert_string_equal(resource_name(v), "n1");
	assert_string_equal(resource_namespace(v), "ns");
	assert_string_equal(resource_string_at(v, "spec.project.id"), "d4e6");
	assert_null(resource_string_at(v, "spec.n"));
	assert_null(resource_string_at(v, "spec.missing.x"));
	json_decref(v);
	v = parse_ok("{}");
	assert_string_equal(resource_name(v), "");
	json_decref(v);
}

static void test_validate_status(void **state)
{
	json_t *st = parse_ok("dataState: Completed\nstage: Published\n");
	(void)state;
	assert_int_equal(resource_validate_status(RESOURCE_DATASOURCE, st), AL_OK);
	json_decref(st);
	st = parse_ok("dataState: Done\n");
	assert_int_equal(resource_validate_status(RESOURCE_DATASOURCE, st), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "status.dataState: Unsupported value"));
	json_decref(st);
	st = parse_ok("statusText: Waiting\n");
	assert_int_equal(resource_validate_status(RESOURCE_WORKSPACE, st), AL_OK);
	json_decref(st);
}

/* ---- fixtures ---- */

static int run_fixture_dir(const char *sub, int expect_valid)
{
	char *dir = util_path_join(fixtures_dir(), sub);
	DIR *d;
	struct dirent *e;
	int count = 0, failures = 0;

	assert_non_null(dir);
	d = opendir(dir);
	if (!d)
		fail_msg("cannot open fixture directory %s (set AIRLOCK_FIXTURES)", dir);
	while ((e = readdir(d))) {
		char *path, *data = NULL, expect[512] = "";
		size_t len = 0, nl;
		json_t *obj = NULL;
		int rc;

		if (!strstr(e->d_name, ".yaml") && !strstr(e->d_name, ".json"))
			continue;
		path = util_path_join(dir, e->d_name);
		assert_non_null(path);
		if (util_read_file(path, RESOURCE_MAX_DOCUMENT + 1, &data, &len) < 0)
			fail_msg("%s: %s", path, al_error_message());
		if (!expect_valid) {
			if (strncmp(data, "# expect: ", 10))
				fail_msg("%s: first line must be '# expect: <error substring>'", path);
			nl = strcspn(data + 10, "\n");
			if (nl >= sizeof(expect))
				nl = sizeof(expect) - 1;
			memcpy(expect, data + 10, nl);
			expect[nl] = '\0';
		}
		rc = resource_parse(data, len, &obj);
		if (rc >= 0)
			rc = resource_validate(obj);
		if (expect_valid && rc < 0) {
			print_error("FAIL %s: %s\n", path, al_error_message());
			failures++;
		} else if (!expect_valid && rc >= 0) {
			print_error("FAIL %s: accepted, expected '%s'\n", path, expect);
			failures++;
		} else if (!expect_valid && !strstr(al_error_message(), expect)) {
			print_error("FAIL %s: error '%s' does not contain '%s'\n", path, al_error_message(), expect);
			failures++;
		}
		json_decref(obj);
		free(data);
		free(path);
		count++;
	}
	closedir(d);
	free(dir);
	if (failures)
		fail_msg("%d of %d fixtures in %s failed", failures, count, sub);
	return count;
}

static void test_fixtures_valid(void **state)
{
	(void)state;
	assert_true(run_fixture_dir("resources/valid", 1) >= 3);
}

static void test_fixtures_invalid(void **state)
{
	(void)state;
	assert_true(run_fixture_dir("resources/invalid", 0) >= 15);
}

/* The embedded schemas must be the CRDs' own (scripts/embed-crds.sh at build time). */
static void test_embedded_schema_matches_crds(void **state)
{
	(void)state;
	for (int k = 0; k < RESOURCE_KIND_COUNT; k++) {
		char *rel, *path, *data = NULL;
		size_t len = 0;
		json_t *crd = NULL, *versions, *schema_file;
		const json_t *embedded;

		assert_true(asprintf(&rel, "../../deploy/crds/%s.yaml", resource_kind_plural(k)) > 0);
		path = util_path_join(fixtures_dir(), rel);
		if (util_read_file(path, RESOURCE_MAX_DOCUMENT + 1, &data, &len) < 0)
			fail_msg("%s: %s", path, al_error_message());
		if (resource_parse(data, len, &crd) < 0)
			fail_msg("%s: %s", path, al_error_message());
		assert_string_equal(json_string_value(json_object_get(crd, "kind")), "CustomResourceDefinition");
		assert_string_equal(resource_string_at(crd, "spec.names.kind"), resource_kind_name(k));
		assert_string_equal(resource_string_at(crd, "spec.group"), RESOURCE_GROUP);
		versions = json_object_get(json_object_get(crd, "spec"), "versions");
		assert_int_equal(json_array_size(versions), 1);
		schema_file = json_object_get(json_object_get(json_array_get(versions, 0), "schema"),
					      "openAPIV3Schema");
		assert_int_equal(schema_get(k, &embedded), AL_OK);
		if (!json_equal(schema_file, (json_t *)embedded))
			fail_msg("%s differs from the schema embedded in the build: rebuild", path);
		json_decref(crd);
		free(data);
		free(path);
		free(rel);
	}
}

static void test_validate_misc(void **state)
{
	json_t *v;
	(void)state;
	/* a 65-character namespace is too long */
	v = parse_ok("apiVersion: xlscsde.nhs.uk/v1\nkind: AnalyticsWorkspaceDataBinding\n"
		     "metadata: {name: x, namespace: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}\n"
		     "spec: {workspace: w, datasource: d}\n");
	assert_int_equal(resource_validate(v), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "metadata.namespace"));
	json_decref(v);
	/* integral floats count as integers, as in JSON Schema */
	v = parse_ok("apiVersion: xlscsde.nhs.uk/v1\nkind: AnalyticsWorkspaceDataBinding\n"
		     "metadata: {name: x}\nspec: {workspace: w, datasource: d}\nstatus: {observedGeneration: 2.0}\n");
	assert_int_equal(resource_validate(v), AL_OK);
	json_decref(v);
	v = parse_ok("apiVersion: xlscsde.nhs.uk/v1\nkind: AnalyticsWorkspaceDataBinding\n"
		     "metadata: {name: x}\nspec: {workspace: w, datasource: d}\nstatus: {observedGeneration: 2.5}\n");
	assert_int_equal(resource_validate(v), AL_ERR_INVALID);
	json_decref(v);
	assert_int_equal(resource_validate(NULL), AL_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yaml_scalar_types),
		cmocka_unit_test(test_yaml_block_scalars),
		cmocka_unit_test(test_yaml_json_input),
		cmocka_unit_test(test_yaml_refusals),
		cmocka_unit_test(test_yaml_billion_laughs),
		cmocka_unit_test(test_yaml_size_cap),
		cmocka_unit_test(test_parse_all),
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_validate_status),
		cmocka_unit_test(test_fixtures_valid),
		cmocka_unit_test(test_fixtures_invalid),
		cmocka_unit_test(test_embedded_schema_matches_crds),
		cmocka_unit_test(test_validate_misc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
