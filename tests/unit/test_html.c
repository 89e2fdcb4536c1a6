/* Tests for web/html: escaping in text and attribute contexts, the escaping
 * formatter, URL segments and form bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "web/html.h"

/* Escapes s with fn into a new string (free it). */
static char *esc(int (*fn)(struct buf *, const char *), const char *s)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(fn(&b, s), AL_OK);
	return buf_detach(&b);
}

static char *esc_n(const char *s, size_t n)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(html_text_n(&b, s, n), AL_OK);
	return buf_detach(&b);
}

#define assert_esc(fn, in, want)                 \
	do {                                      \
		char *got_ = esc(fn, in);         \
		assert_string_equal(got_, want);  \
		free(got_);                       \
	} while (0)

static void test_text_escapes_markup(void **state)
{
	(void)state;
	assert_esc(html_text, "plain text, 123", "plain text, 123");
	assert_esc(html_text, "<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;");
	assert_esc(html_text, "a & b", "a &amp; b");
	assert_esc(html_text, "&amp;", "&amp;amp;");
	assert_esc(html_text, "\"double\" 'single'", "&quot;double&quot; &#39;single&#39;");
	assert_esc(html_text, "<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;");
	assert_esc(html_text, "", "");
	/* Tabs and line ends stay; other controls cannot reach the page. */
	assert_esc(html_text, "a\tb\nc\r\n", "a\tb\nc\r\n");
	assert_esc(html_text, "bell\x07 esc\x1b del\x7f", "bell\xEF\xBF\xBD esc\xEF\xBF\xBD del\xEF\xBF\xBD");
	{
		struct buf b;
		buf_init(&b, 0);
		assert_int_equal(html_text(&b, NULL), AL_OK);
		assert_int_equal(b.len, 0);
		buf_free(&b);
	}
}

static void test_attr_escapes_quotes(void **state)
{
	(void)state;
	/* Breaking out of value="..." or value='...' needs a quote. */
	assert_esc(html_attr, "\" onmouseover=\"alert(1)", "&quot; onmouseover=&quot;alert(1)");
	assert_esc(html_attr, "' autofocus onfocus='x", "&#39; autofocus onfocus=&#39;x");
	assert_esc(html_attr, "`backtick`", "&#96;backtick&#96;");
	assert_esc(html_text, "`backtick`", "`backtick`");
	assert_esc(html_attr, "javascript:a<b>", "javascript:a&lt;b&gt;");
	assert_esc(html_attr, "x&y=z", "x&amp;y=z");
}

static void test_utf8_kept_invalid_replaced(void **state)
{
	char *s;
	(void)state;
	/* Valid multi-byte characters pass untouched. */
	assert_esc(html_text, "Ñoño – 日本 😀", "Ñoño – 日本 😀");
	/* Invalid sequences each become U+FFFD, so no byte can start a
	 * different decoding. */
	assert_esc(html_text, "a\xff" "b", "a\xEF\xBF\xBD" "b");
	assert_esc(html_text, "\xC0\xBC" "script", "\xEF\xBF\xBD\xEF\xBF\xBD" "script"); /* overlong '<' */
	assert_esc(html_text, "\xE0\x80\xBC", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");       /* overlong, 3 bytes */
	assert_esc(html_text, "\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");       /* surrogate */
	assert_esc(html_text, "\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* > U+10FFFF */
	assert_esc(html_text, "end\xE2\x82", "end\xEF\xBF\xBD\xEF\xBF\xBD");                   /* truncated */
	assert_esc(html_attr, "\"\xff\"", "&quot;\xEF\xBF\xBD&quot;");
	/* A NUL in the middle of counted bytes is a control: replaced. */
	s = esc_n("a\0<b", 4);
	assert_string_equal(s, "a\xEF\xBF\xBD&lt;b");
	free(s);

	assert_true(html_utf8_valid("Ñoño 😀", strlen("Ñoño 😀")));
	assert_false(html_utf8_valid("\xC0\x80", 2));
	assert_false(html_utf8_valid("\xE2\x82", 2));
	assert_true(html_utf8_valid("", 0));
}

static void test_fmt_escapes_by_default(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 0);
	assert_int_equal(html_fmt(&b, "<p title=\"%s\">%s</p>%R %d %z %j %%|%U", "a\"b", "<x>", "<br>", -7, (size_t)42,
				  (long long)1 << 40, "ds 1/..?&"),
			 AL_OK);
	assert_string_equal(buf_cstr(&b),
			    "<p title=\"a&quot;b\">&lt;x&gt;</p><br> -7 42 1099511627776 %|ds%201%2F..%3F%26");
	buf_reset(&b);
	assert_int_equal(html_fmt(&b, "%s|%R|%U", NULL, NULL, NULL), AL_OK);
	assert_string_equal(buf_cstr(&b), "||");
	buf_reset(&b);
	/* An unknown conversion is a bug, reported, not a crash. */
	assert_int_equal(html_fmt(&b, "x %q", 1), AL_ERR_INTERNAL);
	buf_free(&b);

	/* Bounded buffers stay bounded. */
	buf_init(&b, 8);
	assert_int_equal(html_fmt(&b, "%s", "<<<<"), AL_ERR_TOO_LARGE);
	buf_free(&b);
}

static void test_url_segment(void **state)
{
	(void)state;
	assert_esc(html_url_segment, "ds-782b4a1f_x.y~", "ds-782b4a1f_x.y~");
	assert_esc(html_url_segment, "a/b c\"<>", "a%2Fb%20c%22%3C%3E");
	assert_esc(html_url_segment, "é", "%C3%A9");
}

static void test_form_parse(void **state)
{
	json_t *f = NULL;
	const char *body = "csrf=abc&displayName=A+%3Cscript%3E+%C3%91&empty=&flag&description=l1%0D%0Al2";
	(void)state;
	assert_int_equal(html_form_parse(body, strlen(body), &f), AL_OK);
	assert_string_equal(json_string_value(json_object_get(f, "csrf")), "abc");
	assert_string_equal(json_string_value(json_object_get(f, "displayName")), "A <script> Ñ");
	assert_string_equal(json_string_value(json_object_get(f, "empty")), "");
	assert_string_equal(json_string_value(json_object_get(f, "flag")), "");
	assert_string_equal(json_string_value(json_object_get(f, "description")), "l1\r\nl2");
	json_decref(f);

	assert_int_equal(html_form_parse("", 0, &f), AL_OK);
	assert_int_equal(json_object_size(f), 0);
	json_decref(f);
	assert_int_equal(html_form_parse("a=1&&b=2&", 9, &f), AL_OK);
	assert_int_equal(json_object_size(f), 2);
	json_decref(f);
	/* Only the given length counts. */
	assert_int_equal(html_form_parse("a=12345", 3, &f), AL_OK);
	assert_string_equal(json_string_value(json_object_get(f, "a")), "1");
	json_decref(f);

	/* Refused: bad escapes, NUL, invalid UTF-8, a field twice, no name. */
	assert_int_equal(html_form_parse("a=%4", 4, &f), AL_ERR_INVALID);
	assert_null(f);
	assert_int_equal(html_form_parse("a=%zz", 5, &f), AL_ERR_INVALID);
	assert_int_equal(html_form_parse("a=%", 3, &f), AL_ERR_INVALID);
	assert_int_equal(html_form_parse("a=%00", 5, &f), AL_ERR_INVALID);
	assert_int_equal(html_form_parse("a=%ff", 5, &f), AL_ERR_INVALID);
	assert_int_equal(html_form_parse("a=1&a=2", 7, &f), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "twice"));
	assert_int_equal(html_form_parse("=1", 2, &f), AL_ERR_INVALID);
	assert_null(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_escapes_markup),
		cmocka_unit_test(test_attr_escapes_quotes),
		cmocka_unit_test(test_utf8_kept_invalid_replaced),
		cmocka_unit_test(test_fmt_escapes_by_default),
		cmocka_unit_test(test_url_segment),
		cmocka_unit_test(test_form_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
