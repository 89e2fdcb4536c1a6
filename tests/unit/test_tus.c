/* Unit tests of the uploader's parsers and rules: names (uploader/names),
 * tus headers (uploader/tus_parse), the PATCH decision (tus_patch_decide)
 * and the resumable SHA-256 (uploader/sha256_run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "uploader/names.h"
#include "uploader/sha256_run.h"
#include "uploader/tus.h"
#include "uploader/tus_parse.h"

/* ---- names ---------------------------------------------------------------- */

static int name_ok(const char *s)
{
	return upload_name_check("relativePath", s, strlen(s)) == AL_OK;
}

/* Refused, with `word` in the message. */
static void name_refused(const char *s, size_t len, const char *word)
{
	int rc = upload_name_check("relativePath", s, len);
	if (rc != AL_ERR_INVALID || !strstr(al_error_message(), word))
		fail_msg("'%s': rc %d, message '%s' (expected '%s')", s, rc, al_error_message(), word);
}

static void test_names_accepted(void **state)
{
	(void)state;
	assert_true(name_ok("a.csv"));
	assert_true(name_ok("folder/sub/file.parquet"));
	assert_true(name_ok("données/naïve – ✓.csv"));
	assert_true(name_ok("a b/c d.txt"));
	assert_true(name_ok("x..y"));       /* dots inside a name are fine */
	assert_true(name_ok("a/b./c"));
	assert_true(name_ok("\xf0\x9f\x98\x80.txt")); /* 4-byte UTF-8 */
	{
		char deep[64] = "";
		for (int i = 0; i < UPLOAD_NAME_MAX_DEPTH - 1; i++)
			strcat(deep, "d/");
		strcat(deep, "f");
		assert_true(name_ok(deep));
	}
	{
		char seg[UPLOAD_NAME_MAX_SEGMENT + 1];
		memset(seg, 'x', UPLOAD_NAME_MAX_SEGMENT);
		seg[UPLOAD_NAME_MAX_SEGMENT] = '\0';
		assert_true(name_ok(seg));
	}
}

static void test_names_refused(void **state)
{
	char buf[2048];
	(void)state;
	name_refused("", 0, "empty");
	name_refused("../x", 4, "parent");
	name_refused("a/../../x", 9, "parent");
	name_refused("a/..", 4, "parent");
	name_refused("./x", 3, "itself");
	name_refused("/etc/passwd", 11, "absolute");
	name_refused("a//b", 4, "empty");
	name_refused("a/", 2, "empty");
	name_refused(".bashrc", 7, "hidden");
	name_refused("a/.uploads/x", 12, "hidden");
	name_refused("a\tb", 3, "control");
	name_refused("a\nb", 3, "control");
	name_refused("a\x7f", 2, "control");
	name_refused("a\xc2\x85", 3, "control");        /* U+0085, a C1 control */
	name_refused("a\0b", 3, "control");             /* binary-safe */
	name_refused("a\\b", 3, "backslash");
	name_refused("\xff.csv", 5, "UTF-8");
	name_refused("\xc0\xaf", 2, "UTF-8");           /* overlong '/' */
	name_refused("\xed\xa0\x80", 3, "UTF-8");       /* a surrogate */
	name_refused("\xf4\x90\x80\x80", 4, "UTF-8");   /* past U+10FFFF */
	name_refused("abc\xe2\x82", 5, "UTF-8");        /* cut short */
	memset(buf, 'x', 300);
	name_refused(buf, 300, "at most");
	memset(buf, 'x', sizeof(buf));
	name_refused(buf, sizeof(buf), "at most");
	buf[0] = '\0';
	for (int i = 0; i < UPLOAD_NAME_MAX_DEPTH; i++)
		strcat(buf, "d/");
	strcat(buf, "f");
	name_refused(buf, strlen(buf), "levels");
}

static void test_name_from_metadata(void **state)
{
	char *out = NULL;
	(void)state;
	assert_int_equal(upload_name_from_metadata("a/b.csv", 7, "b.csv", 5, &out), AL_OK);
	assert_string_equal(out, "a/b.csv");
	free(out);
	assert_int_equal(upload_name_from_metadata(NULL, 0, "b.csv", 5, &out), AL_OK);
	assert_string_equal(out, "b.csv");
	free(out);
	assert_int_equal(upload_name_from_metadata(NULL, 0, "a/b.csv", 7, &out), AL_ERR_INVALID);
	assert_null(out);
	assert_non_null(strstr(al_error_message(), "relativePath"));
	assert_int_equal(upload_name_from_metadata(NULL, 0, NULL, 0, &out), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "filename"));
	assert_int_equal(upload_name_from_metadata("../x", 4, "x", 1, &out), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "relativePath"));
}

/* ---- headers ------------------------------------------------------------- */

static void test_parse_uint(void **state)
{
	uint64_t v = 1;
	(void)state;
	assert_int_equal(tus_parse_uint("Upload-Length", "0", &v), AL_OK);
	assert_int_equal(v, 0);
	assert_int_equal(tus_parse_uint("Upload-Length", "9223372036854775807", &v), AL_OK);
	assert_true(v == (uint64_t)INT64_MAX);
	assert_int_equal(tus_parse_uint("Upload-Length", "9223372036854775808", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Length", "99999999999999999999999", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Length", "-1", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Length", "+1", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Length", " 1", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Length", "1x", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Length", "", &v), AL_ERR_INVALID);
	assert_int_equal(tus_parse_uint("Upload-Offset", NULL, &v), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "Upload-Offset"));
}

static void test_parse_metadata(void **state)
{
	struct tus_meta m;
	const struct tus_meta_item *it;
	(void)state;

	/* The protocol's own example, plus a key without a value. */
	assert_int_equal(tus_parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential", &m), AL_OK);
	assert_int_equal(m.n, 2);
	it = tus_meta_get(&m, "filename");
	assert_non_null(it);
	assert_string_equal(it->value, "world_domination_plan.pdf");
	assert_int_equal(it->value_len, 25);
	it = tus_meta_get(&m, "is_confidential");
	assert_non_null(it);
	assert_int_equal(it->value_len, 0);
	assert_null(tus_meta_get(&m, "missing"));
	tus_meta_free(&m);

	/* Padding optional; binary values kept with their length. */
	assert_int_equal(tus_parse_metadata("a YQ,b AGI=,c", &m), AL_OK);
	assert_string_equal(tus_meta_get(&m, "a")->value, "a");
	assert_int_equal(tus_meta_get(&m, "b")->value_len, 2);
	assert_int_equal(tus_meta_get(&m, "b")->value[0], 0);
	tus_meta_free(&m);

	assert_int_equal(tus_parse_metadata(NULL, &m), AL_OK);
	assert_int_equal(m.n, 0);
	assert_int_equal(tus_parse_metadata("", &m), AL_OK);
	assert_int_equal(m.n, 0);

	assert_int_equal(tus_parse_metadata("a YQ==,a Yg==", &m), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "twice"));
	assert_int_equal(tus_parse_metadata("a not*base64", &m), AL_ERR_INVALID);
	assert_int_equal(tus_parse_metadata("a YQ=", &m), AL_ERR_INVALID);
	assert_int_equal(tus_parse_metadata(",a YQ==", &m), AL_ERR_INVALID);
	assert_int_equal(tus_parse_metadata("a YQ==,", &m), AL_ERR_INVALID);
	assert_int_equal(tus_parse_metadata("k\xc3\xa9y YQ==", &m), AL_ERR_INVALID);
	assert_int_equal(m.n, 0);
	{
		/* Bounded: pairs, key length, header length. */
		char big[TUS_HEADER_MAX + 16];
		struct buf b;
		buf_init(&b, 0);
		for (int i = 0; i <= TUS_META_MAX_PAIRS; i++)
			buf_appendf(&b, "%sk%d YQ==", i ? "," : "", i);
		assert_int_equal(tus_parse_metadata(b.ptr, &m), AL_ERR_INVALID);
		buf_free(&b);
		memset(big, 'k', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(tus_parse_metadata(big, &m), AL_ERR_INVALID);
		big[TUS_META_MAX_KEY + 1] = '\0';
		assert_int_equal(tus_parse_metadata(big, &m), AL_ERR_INVALID);
	}
}

static void test_parse_checksum(void **state)
{
	struct tus_checksum c;
	(void)state;
	/* The protocol's example: sha1 of "hello world". */
	assert_int_equal(tus_parse_checksum("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", &c), AL_OK);
	assert_int_equal(c.alg, TUS_CK_SHA1);
	assert_int_equal(c.len, 20);
	assert_int_equal(c.digest[0], 0x2a);
	assert_int_equal(tus_parse_checksum("sha256 uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=", &c), AL_OK);
	assert_int_equal(c.alg, TUS_CK_SHA256);
	assert_int_equal(c.len, 32);
	assert_string_equal(tus_checksum_name(TUS_CK_SHA256), "sha256");

	assert_int_equal(tus_parse_checksum("crc32 AAAAAA==", &c), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "sha1"));
	assert_int_equal(tus_parse_checksum("SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", &c), AL_ERR_INVALID);
	assert_int_equal(tus_parse_checksum("sha1 Kq5sNclPz7QV2", &c), AL_ERR_INVALID);   /* too short */
	assert_int_equal(tus_parse_checksum("sha256 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", &c), AL_ERR_INVALID);
	assert_int_equal(tus_parse_checksum("sha1 !!!", &c), AL_ERR_INVALID);
	assert_int_equal(tus_parse_checksum("sha1", &c), AL_ERR_INVALID);
	assert_int_equal(tus_parse_checksum(" sha1 x", &c), AL_ERR_INVALID);
	assert_int_equal(tus_parse_checksum(NULL, &c), AL_ERR_INVALID);
}

static void test_parse_concat(void **state)
{
	const char *base = "/api/v1/datasources/d/uploads";
	const char *id1 = "0123456789abcdef0123456789abcdef", *id2 = "fedcba9876543210fedcba9876543210";
	struct tus_concat c;
	char h[512];
	(void)state;

	assert_int_equal(tus_parse_concat(NULL, base, &c), AL_OK);
	assert_int_equal(c.kind, TUS_CONCAT_NONE);
	assert_int_equal(tus_parse_concat("partial", base, &c), AL_OK);
	assert_int_equal(c.kind, TUS_CONCAT_PARTIAL);
	snprintf(h, sizeof(h), "final;%s/%s https://airlock.example%s/%s", base, id1, base, id2);
	assert_int_equal(tus_parse_concat(h, base, &c), AL_OK);
	assert_int_equal(c.kind, TUS_CONCAT_FINAL);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.ids[0], id1);
	assert_string_equal(c.ids[1], id2);
	tus_concat_free(&c);

	assert_int_equal(tus_parse_concat("final;", base, &c), AL_ERR_INVALID);
	assert_int_equal(tus_parse_concat("Partial", base, &c), AL_ERR_INVALID);
	snprintf(h, sizeof(h), "final;/other/uploads/%s", id1);
	assert_int_equal(tus_parse_concat(h, base, &c), AL_ERR_INVALID);
	snprintf(h, sizeof(h), "final;%s/%s/../x", base, id1);
	assert_int_equal(tus_parse_concat(h, base, &c), AL_ERR_INVALID);
	snprintf(h, sizeof(h), "final;%s/0123456789ABCDEF0123456789abcdef", base);
	assert_int_equal(tus_parse_concat(h, base, &c), AL_ERR_INVALID);
	assert_int_equal(c.n, 0);
	assert_true(tus_is_id(id1));
	assert_false(tus_is_id("0123"));
	assert_false(tus_is_id(NULL));
}

static void test_http_date(void **state)
{
	char d[TUS_HTTP_DATE_LEN];
	(void)state;
	tus_http_date(1403712000, d); /* the protocol's example: Wed, 25 Jun 2014 16:00:00 GMT */
	assert_string_equal(d, "Wed, 25 Jun 2014 16:00:00 GMT");
	tus_http_date(0, d);
	assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
}

/* ---- offsets and lengths -------------------------------------------------- */

static void test_patch_decide(void **state)
{
	struct tus_limits lim = { 1000, 1500, 10, 3600 };
	uint64_t limit;
	int64_t nl;
	(void)state;

	/* offset must match; absent is 400, another is 409 */
	assert_int_equal(tus_patch_decide(&lim, 10, 100, -1, -1, 5, 0, &limit, &nl), 400);
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 9, -1, 5, 0, &limit, &nl), 409);
	assert_non_null(strstr(al_error_message(), "HEAD"));
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 11, -1, 5, 0, &limit, &nl), 409);
	/* a known length: the body may fill it, never pass it */
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 10, -1, 90, 0, &limit, &nl), 0);
	assert_int_equal(limit, 90);
	assert_int_equal(nl, 100);
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 10, -1, 91, 0, &limit, &nl), 413);
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 10, -1, -1, 0, &limit, &nl), 0); /* chunked */
	assert_int_equal(limit, 90);
	/* a complete upload takes an empty PATCH */
	assert_int_equal(tus_patch_decide(&lim, 100, 100, 100, -1, 0, 0, &limit, &nl), 0);
	assert_int_equal(limit, 0);
	/* the length cannot change once known */
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 10, 100, 5, 0, &limit, &nl), 0);
	assert_int_equal(tus_patch_decide(&lim, 10, 100, 10, 101, 5, 0, &limit, &nl), 400);
	/* deferred: held to the file limit and what is left of the quota */
	assert_int_equal(tus_patch_decide(&lim, 0, -1, 0, -1, -1, 1200, &limit, &nl), 0);
	assert_int_equal(limit, 300);
	assert_int_equal(nl, -1);
	assert_int_equal(tus_patch_decide(&lim, 0, -1, 0, -1, -1, 0, &limit, &nl), 0);
	assert_int_equal(limit, 1000);
	assert_int_equal(tus_patch_decide(&lim, 0, -1, 0, -1, 301, 1200, &limit, &nl), 413);
	assert_int_equal(tus_patch_decide(&lim, 0, -1, 0, -1, -1, 1500, &limit, &nl), 0);
	assert_int_equal(limit, 0);
	/* deferred, the length given now: checked, then it is the limit */
	assert_int_equal(tus_patch_decide(&lim, 50, -1, 50, 400, 10, 50, &limit, &nl), 0);
	assert_int_equal(nl, 400);
	assert_int_equal(limit, 350);
	assert_int_equal(tus_patch_decide(&lim, 50, -1, 50, 40, 0, 50, &limit, &nl), 400);   /* < offset */
	assert_int_equal(tus_patch_decide(&lim, 50, -1, 50, 1001, 0, 50, &limit, &nl), 413); /* > file limit */
	assert_int_equal(tus_patch_decide(&lim, 50, -1, 50, 900, 0, 700, &limit, &nl), 413); /* > quota */
	assert_non_null(strstr(al_error_message(), "quota"));
}

/* ---- the resumable SHA-256 ---------------------------------------------- */

static void sha_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void test_sha256_run_save_restore(void **state)
{
	size_t len = 100000;
	unsigned char *data = malloc(len);
	char want[65], got[65];
	(void)state;
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)(i * 31 + 7);
	sha_hex(data, len, want);

	/* Stopped at offsets on and off a block boundary, in other pieces. */
	const size_t cuts[] = { 0, 1, 63, 64, 65, 4096, 4097, 99999, 100000 };
	for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		struct sha256_run a, b;
		size_t cut = cuts[c], tail = cut % 64;
		json_t *saved;
		char *text;

		sha256_run_init(&a);
		sha256_run_update(&a, data, cut / 2);
		sha256_run_update(&a, data + cut / 2, cut - cut / 2);
		saved = sha256_run_save(&a);
		assert_non_null(saved);
		/* The saved form survives a trip through JSON text. */
		text = json_dumps(saved, 0);
		json_decref(saved);
		saved = json_loads(text, 0, NULL);
		free(text);
		assert_int_equal(json_integer_value(json_object_get(saved, "bytes")), cut - tail);
		assert_int_equal(sha256_run_restore(&b, saved, cut, data + cut - tail, tail), AL_OK);
		assert_true(b.bytes == cut);
		sha256_run_update(&b, data + cut, len - cut);
		sha256_run_hex(&b, got);
		assert_string_equal(got, want);
		/* hex does not disturb the running state */
		sha256_run_hex(&a, got);
		sha256_run_update(&a, data + cut, len - cut);
		sha256_run_hex(&a, got);
		assert_string_equal(got, want);
		/* A state that does not fit is refused. */
		assert_int_equal(sha256_run_restore(&b, saved, cut + 64, data, tail), AL_ERR_INVALID);
		if (tail)
			assert_int_equal(sha256_run_restore(&b, saved, cut, data, tail - 1), AL_ERR_INVALID);
		json_decref(saved);
	}
	{
		struct sha256_run r;
		json_t *bad = json_pack("{s:s, s:i}", "h", "zz", "bytes", 0);
		assert_int_equal(sha256_run_restore(&r, bad, 0, NULL, 0), AL_ERR_INVALID);
		json_decref(bad);
		bad = json_pack("{s:s, s:i}", "h", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", "bytes", 0);
		assert_int_equal(sha256_run_restore(&r, bad, 0, NULL, 0), AL_ERR_INVALID);
		json_decref(bad);
		bad = json_pack("{s:s, s:i}", "h", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "bytes", 3);
		assert_int_equal(sha256_run_restore(&r, bad, 3, NULL, 0), AL_ERR_INVALID);
		json_decref(bad);
		assert_int_equal(sha256_run_restore(&r, NULL, 0, NULL, 0), AL_ERR_INVALID);
	}
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_accepted),
		cmocka_unit_test(test_names_refused),
		cmocka_unit_test(test_name_from_metadata),
		cmocka_unit_test(test_parse_uint),
		cmocka_unit_test(test_parse_metadata),
		cmocka_unit_test(test_parse_checksum),
		cmocka_unit_test(test_parse_concat),
		cmocka_unit_test(test_http_date),
		cmocka_unit_test(test_patch_decide),
		cmocka_unit_test(test_sha256_run_save_restore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
