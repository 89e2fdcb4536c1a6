#include "uploader/tus_parse.h"

#include "common/error.h"
#include "common/util.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int tus_parse_uint(const char *what, const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (!s || !*s)
		return al_error_set(AL_ERR_INVALID, "%s: expected a non-negative integer, got nothing", what);
	for (i = 0; s[i]; i++) {
		unsigned d;
		if (s[i] < '0' || s[i] > '9')
			return al_error_set(AL_ERR_INVALID, "%s: expected a non-negative integer (digits only)", what);
		d = (unsigned)(s[i] - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return al_error_set(AL_ERR_INVALID, "%s: the number is too large", what);
		v = v * 10 + d;
	}
	*out = v;
	return AL_OK;
}

/* Decodes standard base64 (padding optional) into a new NUL-terminated buffer. */
static int b64_decode(const char *what, const char *s, size_t len, char **out, size_t *out_len)
{
	size_t cap = len / 4 * 3 + 3, got = 0;
	const char *end = NULL;
	char *bin;

	*out = NULL;
	*out_len = 0;
	if (!(bin = malloc(cap + 1)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	if (len > 0 && sodium_base642bin((unsigned char *)bin, cap, s, len, NULL, &got, &end,
					 (len % 4) ? sodium_base64_VARIANT_ORIGINAL_NO_PADDING
						   : sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(bin);
		return al_error_set(AL_ERR_INVALID, "%s: not valid base64", what);
	}
	if (len > 0 && end != s + len) {
		free(bin);
		return al_error_set(AL_ERR_INVALID, "%s: not valid base64", what);
	}
	bin[got] = '\0';
	*out = bin;
	*out_len = got;
	return AL_OK;
}

void tus_meta_free(struct tus_meta *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->items[i].key);
		free(m->items[i].value);
	}
	free(m->items);
	m->items = NULL;
	m->n = 0;
}

const struct tus_meta_item *tus_meta_get(const struct tus_meta *m, const char *key)
{
	for (size_t i = 0; m && i < m->n; i++)
		if (!strcmp(m->items[i].key, key))
			return &m->items[i];
	return NULL;
}

static int key_char_ok(char c)
{
	return c > 0x20 && c < 0x7F && c != ',';
}

int tus_parse_metadata(const char *header, struct tus_meta *out)
{
	const char *p = header;
	size_t hlen;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!header)
		return AL_OK;
	hlen = strlen(header);
	if (hlen > TUS_HEADER_MAX)
		return al_error_set(AL_ERR_INVALID, "Upload-Metadata: %zu bytes; at most %d are accepted", hlen,
				    TUS_HEADER_MAX);
	while (*p == ' ' || *p == '\t')
		p++;
	if (!*p)
		return AL_OK; /* an empty header: no metadata */
	for (;;) {
		const char *k = p, *v, *vend;
		size_t klen;
		struct tus_meta_item *grown, *it;

		while (*p == ' ' || *p == '\t')
			p++;
		k = p;
		while (key_char_ok(*p))
			p++;
		klen = (size_t)(p - k);
		if (klen == 0) {
			rc = al_error_set(AL_ERR_INVALID, "Upload-Metadata: pair %zu has no key", out->n + 1);
			goto fail;
		}
		if (klen > TUS_META_MAX_KEY) {
			rc = al_error_set(AL_ERR_INVALID, "Upload-Metadata: a key is longer than %d bytes", TUS_META_MAX_KEY);
			goto fail;
		}
		if (*p && *p != ' ' && *p != ',') {
			rc = al_error_set(AL_ERR_INVALID, "Upload-Metadata: a key may hold printable ASCII only");
			goto fail;
		}
		if (*p == ' ')
			p++;
		v = p;
		while (*p && *p != ',')
			p++;
		vend = p;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		if (out->n == TUS_META_MAX_PAIRS) {
			rc = al_error_set(AL_ERR_INVALID, "Upload-Metadata: more than %d pairs", TUS_META_MAX_PAIRS);
			goto fail;
		}
		for (size_t i = 0; i < out->n; i++)
			if (strlen(out->items[i].key) == klen && !memcmp(out->items[i].key, k, klen)) {
				rc = al_error_set(AL_ERR_INVALID, "Upload-Metadata: the key '%.*s' appears twice", (int)klen, k);
				goto fail;
			}
		grown = realloc(out->items, (out->n + 1) * sizeof(*grown));
		if (!grown) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto fail;
		}
		out->items = grown;
		it = &out->items[out->n];
		memset(it, 0, sizeof(*it));
		if (!(it->key = util_strndup(k, klen))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto fail;
		}
		out->n++;
		if ((rc = b64_decode("Upload-Metadata", v, (size_t)(vend - v), &it->value, &it->value_len))) {
			al_error_set(rc, "Upload-Metadata: the value of '%s' is not valid base64", it->key);
			goto fail;
		}
		if (!*p)
			break;
		p++; /* ',' */
	}
	return AL_OK;
fail:
	tus_meta_free(out);
	return rc;
}

static const struct {
	const char *name;
	enum tus_checksum_alg alg;
	size_t len;
} checksum_algs[] = {
	{ "sha1", TUS_CK_SHA1, 20 },
	{ "sha256", TUS_CK_SHA256, 32 },
	{ "sha512", TUS_CK_SHA512, 64 },
	{ "md5", TUS_CK_MD5, 16 },
};

const char *tus_checksum_name(enum tus_checksum_alg alg)
{
	for (size_t i = 0; i < sizeof(checksum_algs) / sizeof(checksum_algs[0]); i++)
		if (checksum_algs[i].alg == alg)
			return checksum_algs[i].name;
	return "none";
}

int tus_parse_checksum(const char *header, struct tus_checksum *out)
{
	const char *sp;
	char *bin = NULL;
	size_t nlen, blen = 0, i;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!header || !(sp = strchr(header, ' ')) || sp == header)
		return al_error_set(AL_ERR_INVALID, "Upload-Checksum: expected '<algorithm> <base64 digest>'");
	nlen = (size_t)(sp - header);
	for (i = 0; i < sizeof(checksum_algs) / sizeof(checksum_algs[0]); i++)
		if (strlen(checksum_algs[i].name) == nlen && !memcmp(checksum_algs[i].name, header, nlen))
			break;
	if (i == sizeof(checksum_algs) / sizeof(checksum_algs[0]))
		return al_error_set(AL_ERR_INVALID, "Upload-Checksum: the algorithm is not supported; use one of " TUS_CHECKSUM_ALGORITHMS);
	if (strlen(sp + 1) > 128)
		return al_error_set(AL_ERR_INVALID, "Upload-Checksum: the digest is too long");
	if ((rc = b64_decode("Upload-Checksum", sp + 1, strlen(sp + 1), &bin, &blen)))
		return al_error_set(rc, "Upload-Checksum: the digest is not valid base64");
	if (blen != checksum_algs[i].len) {
		free(bin);
		return al_error_set(AL_ERR_INVALID, "Upload-Checksum: a %s digest is %zu bytes, this one is %zu",
				    checksum_algs[i].name, checksum_algs[i].len, blen);
	}
	out->alg = checksum_algs[i].alg;
	out->len = blen;
	memcpy(out->digest, bin, blen);
	free(bin);
	return AL_OK;
}

int tus_is_id(const char *s)
{
	size_t i;
	if (!s)
		return 0;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return i == TUS_ID_LEN;
}

void tus_concat_free(struct tus_concat *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->ids[i]);
	free(c->ids);
	c->ids = NULL;
	c->n = 0;
	c->kind = TUS_CONCAT_NONE;
}

/* The id that `url` (absolute, or a path) names under `base`, or NULL. */
static char *concat_id(const char *url, size_t len, const char *base)
{
	const char *p = url, *end = url + len;
	size_t blen = strlen(base);
	char *id;

	if (len > 8 && (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))) {
		p = memchr(url + 8, '/', len - 8);
		if (!p)
			return NULL;
	}
	if ((size_t)(end - p) != blen + 1 + TUS_ID_LEN || memcmp(p, base, blen) || p[blen] != '/')
		return NULL;
	id = util_strndup(p + blen + 1, TUS_ID_LEN);
	if (id && !tus_is_id(id)) {
		free(id);
		return NULL;
	}
	return id;
}

int tus_parse_concat(const char *header, const char *base, struct tus_concat *out)
{
	const char *p;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!header)
		return AL_OK;
	if (strlen(header) > TUS_HEADER_MAX)
		return al_error_set(AL_ERR_INVALID, "Upload-Concat: longer than %d bytes", TUS_HEADER_MAX);
	if (!strcmp(header, "partial")) {
		out->kind = TUS_CONCAT_PARTIAL;
		return AL_OK;
	}
	if (strncmp(header, "final;", 6))
		return al_error_set(AL_ERR_INVALID, "Upload-Concat: expected 'partial' or 'final;<url> <url> ...'");
	out->kind = TUS_CONCAT_FINAL;
	p = header + 6;
	for (;;) {
		const char *u;
		char **grown, *id;
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		u = p;
		while (*p && *p != ' ')
			p++;
		if (out->n == TUS_CONCAT_MAX_PARTS) {
			rc = al_error_set(AL_ERR_INVALID, "Upload-Concat: more than %d partial uploads", TUS_CONCAT_MAX_PARTS);
			goto fail;
		}
		if (!(id = concat_id(u, (size_t)(p - u), base))) {
			rc = al_error_set(AL_ERR_INVALID, "Upload-Concat: part %zu is not an upload of %s", out->n + 1, base);
			goto fail;
		}
		grown = realloc(out->ids, (out->n + 1) * sizeof(*grown));
		if (!grown) {
			free(id);
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto fail;
		}
		out->ids = grown;
		out->ids[out->n++] = id;
	}
	if (out->n == 0) {
		rc = al_error_set(AL_ERR_INVALID, "Upload-Concat: 'final;' names no partial uploads");
		goto fail;
	}
	return AL_OK;
fail:
	tus_concat_free(out);
	return rc;
}

void tus_http_date(int64_t t, char out[TUS_HTTP_DATE_LEN])
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	/* Names spelled out here: strftime's would follow the locale. */
	if (!gmtime_r(&tt, &tm)) {
		snprintf(out, TUS_HTTP_DATE_LEN, "Thu, 01 Jan 1970 00:00:00 GMT");
		return;
	}
	snprintf(out, TUS_HTTP_DATE_LEN, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
		 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
