#include "web/html.h"

#include "common/error.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there
 * are not one (overlong, surrogate, above U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	uint32_t cp;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		n = 2;
		cp = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		n = 3;
		cp = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

int html_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		size_t n = utf8_seq(p + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

static int escape(struct buf *b, const char *s, size_t len, int attr)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, start = 0;
	int rc = AL_OK;

	/* Runs of harmless bytes are appended in one go; only the bytes that
	 * need a reference or a replacement break the run. */
	while (i < len && !rc) {
		const char *rep = NULL;
		size_t n = 1;
		unsigned char c = p[i];
		switch (c) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		case '`': rep = attr ? "&#96;" : NULL; break;
		default:
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
				rep = REPLACEMENT;
			else if (c == 0x7F)
				rep = REPLACEMENT;
			else if (c >= 0x80 && !(n = utf8_seq(p + i, len - i))) {
				n = 1;
				rep = REPLACEMENT;
			}
		}
		if (!rep) {
			i += n;
			continue;
		}
		if (i > start)
			rc = buf_append(b, s + start, i - start);
		if (!rc)
			rc = buf_appends(b, rep);
		i += n;
		start = i;
	}
	if (!rc && i > start)
		rc = buf_append(b, s + start, i - start);
	return rc;
}

int html_text_n(struct buf *b, const char *s, size_t len)
{
	return s ? escape(b, s, len, 0) : AL_OK;
}

int html_text(struct buf *b, const char *s)
{
	return s ? escape(b, s, strlen(s), 0) : AL_OK;
}

int html_attr(struct buf *b, const char *s)
{
	return s ? escape(b, s, strlen(s), 1) : AL_OK;
}

int html_url_segment(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = AL_OK;
	for (const unsigned char *p = (const unsigned char *)s; p && *p && !rc; p++) {
		unsigned char c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		    c == '.' || c == '_' || c == '~') {
			rc = buf_appendc(b, (char)c);
		} else {
			char enc[3] = { '%', hex[c >> 4], hex[c & 15] };
			rc = buf_append(b, enc, 3);
		}
	}
	return rc;
}

int html_vfmt(struct buf *b, const char *fmt, va_list ap)
{
	const char *p = fmt, *start = fmt;
	int rc = AL_OK;

	while (*p && !rc) {
		char num[32];
		if (*p != '%') {
			p++;
			continue;
		}
		if (p > start && (rc = buf_append(b, start, (size_t)(p - start))))
			break;
		switch (p[1]) {
		case 's': rc = html_text(b, va_arg(ap, const char *)); break;
		case 'U': rc = html_url_segment(b, va_arg(ap, const char *)); break;
		case 'R': {
			const char *raw = va_arg(ap, const char *);
			rc = raw ? buf_appends(b, raw) : AL_OK;
			break;
		}
		case 'd':
			snprintf(num, sizeof(num), "%d", va_arg(ap, int));
			rc = buf_appends(b, num);
			break;
		case 'z':
			snprintf(num, sizeof(num), "%zu", va_arg(ap, size_t));
			rc = buf_appends(b, num);
			break;
		case 'j':
			snprintf(num, sizeof(num), "%lld", va_arg(ap, long long));
			rc = buf_appends(b, num);
			break;
		case '%': rc = buf_appendc(b, '%'); break;
		default:
			rc = al_error_set(AL_ERR_INTERNAL, "html_fmt: unknown conversion in \"%.60s\"", fmt);
		}
		if (rc)
			break;
		p += 2;
		start = p;
	}
	if (!rc && p > start)
		rc = buf_append(b, start, (size_t)(p - start));
	return rc;
}

int html_fmt(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;
	va_start(ap, fmt);
	rc = html_vfmt(b, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- forms --------------------------------------------------------------- */

/* Decodes one name or value of a form body: '+' is a space, %XX a byte. */
static int form_decode(const char *s, size_t len, struct buf *out)
{
	char *dec = NULL;
	size_t n = 0;
	int rc = util_percent_decode(s, len, UTIL_PCT_PLUS, &dec, &n);

	if (rc == AL_ERR_INVALID)
		return al_error_set(AL_ERR_INVALID, "the form has a bad %%-escape or a NUL byte");
	if (rc)
		return rc;
	buf_reset(out);
	if (memchr(dec, '\0', n))
		rc = al_error_set(AL_ERR_INVALID, "the form contains a NUL byte");
	else if (n && !html_utf8_valid(dec, n))
		rc = al_error_set(AL_ERR_INVALID, "the form is not valid UTF-8");
	else
		rc = buf_append(out, dec, n);
	free(dec);
	return rc;
}

int html_form_parse(const char *body, size_t len, json_t **out)
{
	json_t *obj = json_object();
	struct buf name, value;
	size_t i = 0;
	int rc = AL_OK;

	*out = NULL;
	if (!obj)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	buf_init(&name, 4096);
	buf_init(&value, len + 1);
	while (i < len && !rc) {
		const char *pair = body + i, *amp = memchr(pair, '&', len - i), *eq;
		size_t plen = amp ? (size_t)(amp - pair) : len - i;
		i += plen + 1;
		if (plen == 0)
			continue; /* "a=1&&b=2" */
		eq = memchr(pair, '=', plen);
		if ((rc = form_decode(pair, eq ? (size_t)(eq - pair) : plen, &name)) ||
		    (rc = form_decode(eq ? eq + 1 : pair + plen, eq ? plen - (size_t)(eq - pair) - 1 : 0, &value)))
			break;
		if (!name.len) {
			rc = al_error_set(AL_ERR_INVALID, "the form has a field without a name");
			break;
		}
		if (json_object_get(obj, buf_cstr(&name))) {
			rc = al_error_set(AL_ERR_INVALID, "the form field '%.64s' is given twice", buf_cstr(&name));
			break;
		}
		if (json_object_set_new(obj, buf_cstr(&name), json_string(buf_cstr(&value))))
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	buf_free(&name);
	buf_free(&value);
	if (rc) {
		json_decref(obj);
		return rc;
	}
	*out = obj;
	return AL_OK;
}
