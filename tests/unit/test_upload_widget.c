/* Tests for web/upload_widget: the widget's markup (its root's data-
 * attributes, escaping, the scripts, no inline script or style) and the
 * endpoint template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "web/upload_widget.h"

static json_t *ds_named(const char *name, const char *uid)
{
	json_t *ds = json_pack("{s:{s:s}}", "metadata", "name", name);
	assert_non_null(ds);
	if (uid)
		json_object_set_new(json_object_get(ds, "metadata"), "uid", json_string(uid));
	return ds;
}

/* 1 if html has an event handler attribute ( on<letters>= ). */
static int has_handler(const char *html)
{
	for (const char *p = strstr(html, " on"); p; p = strstr(p + 1, " on")) {
		const char *q = p + 3;
		while (*q >= 'a' && *q <= 'z')
			q++;
		if (q > p + 3 && *q == '=')
			return 1;
	}
	return 0;
}

static char *render(void *ud, const json_t *ds, const char *csrf, int want_rc)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(upload_widget_html(ud, ds, csrf, &b), want_rc);
	return buf_detach(&b);
}

static void test_root_carries_the_data_attributes(void **state)
{
	(void)state;
	json_t *ds = ds_named("ds-0123", "u-1");
	char *html = render(NULL, ds, "tok_EN-123", AL_OK);
	assert_non_null(strstr(html, "<section class=\"card upload-widget\" id=\"upload-widget\" data-testid=\"upload-widget\""));
	assert_non_null(strstr(html, "data-endpoint=\"/api/v1/datasources/ds-0123/uploads\""));
	assert_non_null(strstr(html, "data-csrf=\"tok_EN-123\""));
	assert_non_null(strstr(html, "data-datasource=\"ds-0123\""));
	/* Our scripts by path, nothing inline, no styles, a <noscript> note. */
	assert_non_null(strstr(html, "<script src=\"/static/tus.min.js\" defer></script>"));
	assert_non_null(strstr(html, "<script src=\"/static/upload.js\" defer></script>"));
	assert_null(strstr(html, "<script>"));
	assert_null(strstr(html, "style="));
	assert_false(has_handler(html));
	assert_true(has_handler("<a onclick=\"x\">"));
	assert_non_null(strstr(html, "<noscript>"));
	assert_non_null(strstr(html, "webkitdirectory"));
	free(html);
	json_decref(ds);
}

static void test_values_are_escaped(void **state)
{
	(void)state;
	json_t *ds = ds_named("a\"><script>x</script>", NULL);
	char *html = render(NULL, ds, "t\"<'&", AL_OK);
	assert_null(strstr(html, "<script>x"));
	assert_non_null(strstr(html, "data-csrf=\"t&quot;&lt;&#39;&amp;\""));
	/* In the URL the name is one percent-encoded segment. */
	assert_non_null(strstr(html, "data-endpoint=\"/api/v1/datasources/a%22%3E%3Cscript%3Ex%3C%2Fscript%3E/uploads\""));
	free(html);
	json_decref(ds);
}

static void test_endpoint_template(void **state)
{
	(void)state;
	struct upload_widget_options o = { .endpoint_template = "/uploads/upload-{uid}/" };
	json_t *ds = ds_named("ds-1", "0f0e-11");
	json_t *no_uid = ds_named("ds-1", NULL);
	struct buf b;
	char *html = render(&o, ds, "t", AL_OK);
	assert_non_null(strstr(html, "data-endpoint=\"/uploads/upload-0f0e-11/\""));
	assert_non_null(strstr(html, "data-datasource=\"ds-1\""));
	free(html);

	html = render(&o, no_uid, "t", AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "metadata.uid"));
	free(html);

	buf_init(&b, 4096);
	assert_int_equal(upload_widget_endpoint("/x/{name}/{name}", ds, &b), AL_OK);
	assert_string_equal(buf_cstr(&b), "/x/ds-1/ds-1");
	buf_reset(&b);
	assert_int_equal(upload_widget_endpoint("/x/{nope}", ds, &b), AL_ERR_INVALID);
	buf_free(&b);
	json_decref(ds);
	json_decref(no_uid);
}

static void test_refuses_without_name_or_token(void **state)
{
	(void)state;
	json_t *ds = json_object();
	json_t *named = ds_named("ds-1", NULL);
	char *html = render(NULL, ds, "t", AL_ERR_INVALID);
	free(html);
	html = render(NULL, named, "", AL_ERR_INVALID);
	free(html);
	html = render(NULL, named, NULL, AL_ERR_INVALID);
	free(html);
	json_decref(ds);
	json_decref(named);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_carries_the_data_attributes),
		cmocka_unit_test(test_values_are_escaped),
		cmocka_unit_test(test_endpoint_template),
		cmocka_unit_test(test_refuses_without_name_or_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
