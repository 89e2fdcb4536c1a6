#include "runner/csv.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <zlib.h>

/* ---- writer ---- */

int csv_writer_init(struct csv_writer *w, int fd, size_t cap)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->cap = cap ? cap : CSV_WRITER_DEFAULT_BUFFER;
	if (w->cap < 64)
		w->cap = 64;
	w->buf = malloc(w->cap);
	if (!w->buf)
		return al_error_set(AL_ERR_NOMEM, "out of memory for a %zu byte CSV buffer", w->cap);
	if (!(w->sha = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL)) {
		csv_writer_free(w);
		return al_error_set(AL_ERR_NOMEM, "out of memory for SHA-256");
	}
	return AL_OK;
}

int csv_writer_digest(struct csv_writer *w, char out[65])
{
	static const char d[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int n = 0;

	if (!w->sha || !EVP_DigestFinal_ex(w->sha, md, &n) || n != 32)
		return al_error_set(AL_ERR_INTERNAL, "SHA-256 of the output is not available");
	EVP_MD_CTX_free(w->sha);
	w->sha = NULL;
	for (int i = 0; i < 32; i++) {
		out[2 * i] = d[md[i] >> 4];
		out[2 * i + 1] = d[md[i] & 15];
	}
	out[64] = '\0';
	return AL_OK;
}

int csv_writer_init_gzip(struct csv_writer *w, int fd, size_t cap)
{
	z_stream *z;
	int rc;

	if ((rc = csv_writer_init(w, fd, cap)))
		return rc;
	z = calloc(1, sizeof(*z));
	w->zcap = w->cap;
	w->zbuf = malloc(w->zcap);
	/* windowBits 15 + 16: a gzip header and trailer around the deflate data. */
	if (!z || !w->zbuf || deflateInit2(z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(z);
		csv_writer_free(w);
		return al_error_set(AL_ERR_NOMEM, "out of memory for the gzip compressor");
	}
	w->z = z;
	return AL_OK;
}

void csv_writer_free(struct csv_writer *w)
{
	if (w->z) {
		deflateEnd(w->z);
		free(w->z);
		w->z = NULL;
	}
	free(w->zbuf);
	w->zbuf = NULL;
	EVP_MD_CTX_free(w->sha);
	w->sha = NULL;
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

static int write_all(struct csv_writer *w, const char *p, size_t left)
{
	if (w->sha)
		EVP_DigestUpdate(w->sha, p, left);
	while (left) {
		ssize_t n = write(w->fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOSPC || errno == EDQUOT)
				return al_error_set(AL_ERR_IO, "cannot write the output: the volume is full (%s) after "
							       "%llu bytes; free space on it or give it more",
						    strerror(errno), (unsigned long long)w->written);
			return al_error_set(AL_ERR_IO, "cannot write the output: %s", strerror(errno));
		}
		p += n;
		left -= (size_t)n;
		w->written += (uint64_t)n;
	}
	return AL_OK;
}

/* Compresses the buffer (and with Z_FINISH ends the stream). */
static int deflate_out(struct csv_writer *w, int flush)
{
	z_stream *z = w->z;
	int zr, rc;

	z->next_in = (Bytef *)w->buf;
	z->avail_in = (uInt)w->len;
	do {
		z->next_out = (Bytef *)w->zbuf;
		z->avail_out = (uInt)w->zcap;
		zr = deflate(z, flush);
		if (zr == Z_STREAM_ERROR)
			return al_error_set(AL_ERR_INTERNAL, "gzip compressor failed");
		if ((rc = write_all(w, w->zbuf, w->zcap - z->avail_out)))
			return rc;
	} while (z->avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
	w->len = 0;
	return AL_OK;
}

int csv_writer_flush(struct csv_writer *w)
{
	int rc;
	if (w->z)
		return deflate_out(w, Z_NO_FLUSH);
	if ((rc = write_all(w, w->buf, w->len)))
		return rc;
	w->len = 0;
	return AL_OK;
}

int csv_writer_finish(struct csv_writer *w)
{
	return w->z ? deflate_out(w, Z_FINISH) : csv_writer_flush(w);
}

/* Appends bytes, flushing as often as needed (fields bigger than the buffer). */
static int put(struct csv_writer *w, const char *p, size_t n)
{
	int rc;
	while (n) {
		size_t room = w->cap - w->len, k;
		if (!room) {
			if ((rc = csv_writer_flush(w)))
				return rc;
			room = w->cap;
		}
		k = n < room ? n : room;
		memcpy(w->buf + w->len, p, k);
		w->len += k;
		p += k;
		n -= k;
	}
	return AL_OK;
}

/* Ensures `n` contiguous free bytes when n <= cap. */
static int reserve(struct csv_writer *w, size_t n)
{
	if (w->cap - w->len >= n)
		return AL_OK;
	return csv_writer_flush(w);
}

static int separator(struct csv_writer *w)
{
	int rc;
	if (!w->mid_record) {
		w->mid_record = 1;
		return AL_OK;
	}
	if (w->len == w->cap && (rc = csv_writer_flush(w)))
		return rc;
	w->buf[w->len++] = ',';
	return AL_OK;
}

/* Byte classes: 0 plain ASCII, 1 needs quoting, 2 non-ASCII (validate). */
static const unsigned char byte_class[256] = {
	['\n'] = 1, ['\r'] = 1, ['"'] = 1, [','] = 1,
	[0x80 ... 0xff] = 2,
};

size_t csv_utf8_valid_prefix(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t need;
		unsigned int cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		if (n - i <= need)
			return i;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += need + 1;
	}
	return n;
}

int csv_writer_text(struct csv_writer *w, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	int quote = 0, rc;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char k = byte_class[u[i]];
		if (k == 1) {
			quote = 1;
		} else if (k == 2) {
			size_t ok = csv_utf8_valid_prefix(s + i, n - i);
			if (ok != n - i) {
				/* Only the sequence at i can fail here if we validated up to
				 * the next ASCII byte; report the exact offset either way. */
				i += ok;
				return al_error_set(AL_ERR_INVALID, "text is not valid UTF-8 (byte %zu of %zu)",
						    i + 1, n);
			}
			/* Rest validated; finish the quoting scan ASCII-only. */
			for (; i < n; i++)
				if (byte_class[u[i]] == 1)
					quote = 1;
			break;
		}
	}
	if ((rc = separator(w)))
		return rc;
	if (n == 0)
		return put(w, "\"\"", 2);
	if (!quote) {
		if (n <= w->cap - w->len) {
			memcpy(w->buf + w->len, s, n);
			w->len += n;
			return AL_OK;
		}
		return put(w, s, n);
	}
	/* Quoted: fast path when the worst case fits in the free space. */
	if ((rc = reserve(w, n <= (w->cap - 2) / 2 ? 2 * n + 2 : 1)))
		return rc;
	if (2 * n + 2 <= w->cap - w->len) {
		char *o = w->buf + w->len;
		*o++ = '"';
		for (i = 0; i < n; i++) {
			if (s[i] == '"')
				*o++ = '"';
			*o++ = s[i];
		}
		*o++ = '"';
		w->len = (size_t)(o - w->buf);
		return AL_OK;
	}
	if ((rc = put(w, "\"", 1)))
		return rc;
	{
		size_t start = 0;
		for (i = 0; i < n; i++) {
			if (s[i] == '"') {
				if ((rc = put(w, s + start, i + 1 - start)))
					return rc;
				if ((rc = put(w, "\"", 1)))
					return rc;
				start = i + 1;
			}
		}
		if ((rc = put(w, s + start, n - start)))
			return rc;
	}
	return put(w, "\"", 1);
}

int csv_writer_plain(struct csv_writer *w, const char *s, size_t n)
{
	int rc;
	if ((rc = separator(w)))
		return rc;
	return put(w, s, n);
}

int csv_writer_null(struct csv_writer *w)
{
	return separator(w);
}

int csv_writer_int64(struct csv_writer *w, int64_t v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	int rc;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	if ((rc = separator(w)) || (rc = reserve(w, sizeof(tmp))))
		return rc;
	memcpy(w->buf + w->len, p, (size_t)(tmp + sizeof(tmp) - p));
	w->len += (size_t)(tmp + sizeof(tmp) - p);
	return AL_OK;
}

/* Fast path: values with a short decimal form (most real data: 0.5, 12.25,
 * 98.6) in the range where %.15g prints fixed notation. If an integer r below
 * 10^15 satisfies r / 10^k == |v| exactly, the decimal r*10^-k reads back to
 * v, and (DBL_DIG = 15) it is the very string %.15g would print. */
static size_t fixed_short(double v, char out[32])
{
	static const double p10[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
				      1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19 };
	double a = fabs(v);
	char digits[24];

	if (!(a >= 1e-4 && a < 1e15))
		return 0;
	for (int k = 0; k < (int)(sizeof(p10) / sizeof(p10[0])); k++) {
		double s = a * p10[k], r;
		uint64_t m;
		size_t nd = 0, o = 0;

		if (s >= 1e15)
			return 0;
		r = nearbyint(s);
		if (r / p10[k] != a)
			continue;
		m = (uint64_t)r;
		do {
			digits[nd++] = (char)('0' + m % 10);
			m /= 10;
		} while (m);
		if (v < 0)
			out[o++] = '-';
		if ((int)nd <= k) { /* 0.000ddd */
			out[o++] = '0';
			out[o++] = '.';
			for (int z = k - (int)nd; z > 0; z--)
				out[o++] = '0';
			while (nd)
				out[o++] = digits[--nd];
		} else {
			while (nd > (size_t)k)
				out[o++] = digits[--nd];
			out[o++] = '.';
			if (k == 0)
				out[o++] = '0';
			while (nd)
				out[o++] = digits[--nd];
		}
		out[o] = '\0';
		return o;
	}
	return 0;
}

size_t csv_format_double(double v, char out[32])
{
	char tmp[32];
	int n = 0;
	char *e;
	size_t len;

	if (isnan(v)) {
		memcpy(out, "NaN", 4);
		return 3;
	}
	if (isinf(v)) {
		if (v < 0) {
			memcpy(out, "-Inf", 5);
			return 4;
		}
		memcpy(out, "Inf", 4);
		return 3;
	}
	if ((len = fixed_short(v, out)))
		return len;
	/* Otherwise: %.15g when it reads back exactly (short values outside the
	 * fast path's range, e.g. 1e+20), else %.17g, which always does. Values in
	 * the fast path's range already failed the 15-digit test. */
	if (fabs(v) >= 1e-4 && fabs(v) < 1e15) {
		n = snprintf(tmp, sizeof(tmp), "%.17g", v);
	} else {
		n = snprintf(tmp, sizeof(tmp), "%.15g", v);
		if (strtod(tmp, NULL) != v)
			n = snprintf(tmp, sizeof(tmp), "%.17g", v);
	}
	if (n < 0 || (size_t)n >= sizeof(tmp) - 2)
		n = (int)sizeof(tmp) - 3; /* cannot happen for %.17g */
	len = (size_t)n;
	/* SQLite style: a REAL always shows a decimal point ("1.0", "1.0e+20"). */
	if (!memchr(tmp, '.', len)) {
		e = memchr(tmp, 'e', len);
		size_t at = e ? (size_t)(e - tmp) : len;
		memmove(tmp + at + 2, tmp + at, len - at);
		tmp[at] = '.';
		tmp[at + 1] = '0';
		len += 2;
	}
	memcpy(out, tmp, len);
	out[len] = '\0';
	return len;
}

int csv_writer_double(struct csv_writer *w, double v)
{
	char tmp[32];
	size_t n = csv_format_double(v, tmp);
	return csv_writer_plain(w, tmp, n);
}

int csv_writer_base64(struct csv_writer *w, const void *data, size_t n)
{
	const unsigned char *p = data;
	/* Input chunk: a multiple of 3 whose encoding (+NUL) fits a quarter buffer. */
	size_t chunk = (w->cap / 4 / 4) * 3;
	int rc;

	if (chunk < 3)
		chunk = 3;
	if ((rc = separator(w)))
		return rc;
	/* Zero bytes are "", as an empty string: an empty field means NULL. */
	if (n == 0)
		return put(w, "\"\"", 2);
	while (n) {
		size_t k = n < chunk ? n : chunk;
		size_t enc = sodium_base64_encoded_len(k, sodium_base64_VARIANT_ORIGINAL);
		if ((rc = reserve(w, enc)))
			return rc;
		sodium_bin2base64(w->buf + w->len, enc, p, k, sodium_base64_VARIANT_ORIGINAL);
		w->len += enc - 1; /* without the NUL */
		p += k;
		n -= k;
	}
	return AL_OK;
}

int csv_writer_end_record(struct csv_writer *w)
{
	int rc;
	w->mid_record = 0;
	if ((rc = reserve(w, 2)))
		return rc;
	w->buf[w->len++] = '\r';
	w->buf[w->len++] = '\n';
	return AL_OK;
}

/* ---- counter ---- */

enum { C_REC_START, C_FIELD_START, C_UNQUOTED, C_QUOTED, C_QUOTED_QUOTE };

int csv_counter_init(struct csv_counter *c)
{
	memset(c, 0, sizeof(*c));
	c->state = C_REC_START;
	c->capture = 1;
	c->header = json_array();
	if (!c->header)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

void csv_counter_free(struct csv_counter *c)
{
	free(c->field.ptr);
	c->field.ptr = NULL;
	json_decref(c->header);
	c->header = NULL;
}

static void header_abandon(struct csv_counter *c)
{
	c->capture = 0;
	c->header_ok = 0;
	json_decref(c->header);
	c->header = NULL;
}

static void header_char(struct csv_counter *c, char ch)
{
	if (!c->capture)
		return;
	if (c->field.len + 1 >= c->field.cap) {
		size_t ncap = c->field.cap ? 2 * c->field.cap : 64;
		char *p;
		if (ncap > CSV_HEADER_MAX_BYTES) {
			header_abandon(c);
			return;
		}
		p = realloc(c->field.ptr, ncap);
		if (!p) {
			header_abandon(c);
			return;
		}
		c->field.ptr = p;
		c->field.cap = ncap;
	}
	c->field.ptr[c->field.len++] = ch;
}

static void header_end_field(struct csv_counter *c)
{
	json_t *s;
	if (!c->capture)
		return;
	if (json_array_size(c->header) >= CSV_HEADER_MAX_COLUMNS ||
	    csv_utf8_valid_prefix(c->field.ptr ? c->field.ptr : "", c->field.len) != c->field.len ||
	    !(s = json_stringn(c->field.ptr ? c->field.ptr : "", c->field.len)) ||
	    json_array_append_new(c->header, s)) {
		header_abandon(c);
		return;
	}
	c->field.len = 0;
}

static void end_record(struct csv_counter *c)
{
	if (c->capture) {
		header_end_field(c);
		if (c->capture) {
			c->capture = 0;
			c->header_ok = 1;
		}
	}
	c->records++;
	c->state = C_REC_START;
}

int csv_counter_feed(struct csv_counter *c, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = data[i];
		if (c->after_cr) {
			c->after_cr = 0;
			if (ch == '\n')
				continue;
		}
		/* Fast path: the bulk of a file is unquoted field bytes. */
		if (c->state == C_UNQUOTED && !c->capture) {
			while (i < n && data[i] != ',' && data[i] != '\r' && data[i] != '\n')
				i++;
			if (i == n)
				break;
			ch = data[i];
		} else if (c->state == C_QUOTED && !c->capture) {
			const char *q = memchr(data + i, '"', n - i);
			if (!q)
				break;
			i = (size_t)(q - data);
			ch = '"';
		}
		switch (c->state) {
		case C_REC_START:
		case C_FIELD_START:
			if (ch == '"') {
				c->state = C_QUOTED;
			} else if (ch == ',') {
				header_end_field(c);
				c->state = C_FIELD_START;
			} else if (ch == '\r' || ch == '\n') {
				c->after_cr = ch == '\r';
				end_record(c);
			} else {
				header_char(c, ch);
				c->state = C_UNQUOTED;
			}
			break;
		case C_UNQUOTED:
			if (ch == ',') {
				header_end_field(c);
				c->state = C_FIELD_START;
			} else if (ch == '\r' || ch == '\n') {
				c->after_cr = ch == '\r';
				end_record(c);
			} else {
				header_char(c, ch);
			}
			break;
		case C_QUOTED:
			if (ch == '"')
				c->state = C_QUOTED_QUOTE;
			else
				header_char(c, ch);
			break;
		case C_QUOTED_QUOTE:
			if (ch == '"') {
				header_char(c, '"');
				c->state = C_QUOTED;
			} else if (ch == ',') {
				header_end_field(c);
				c->state = C_FIELD_START;
			} else if (ch == '\r' || ch == '\n') {
				c->after_cr = ch == '\r';
				end_record(c);
			} else {
				/* Lenient: text after a closing quote joins the field. */
				header_char(c, ch);
				c->state = C_UNQUOTED;
			}
			break;
		}
	}
	return AL_OK;
}

int csv_counter_finish(struct csv_counter *c, uint64_t *records, json_t **header)
{
	if (c->state != C_REC_START)
		end_record(c);
	*records = c->records;
	if (header) {
		*header = NULL;
		if (c->header_ok && c->header) {
			*header = c->header;
			c->header = NULL;
		}
	}
	return AL_OK;
}

int csv_count_file(const char *path, uint64_t *records, json_t **header)
{
	struct csv_counter c;
	struct stat st;
	char *chunk = NULL;
	ssize_t n;
	int fd, rc;

	if (header)
		*header = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return al_error_set(AL_ERR_IO, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return al_error_set(AL_ERR_INVALID, "%s is not a regular file", path);
	}
	if ((rc = csv_counter_init(&c))) {
		close(fd);
		return rc;
	}
	chunk = malloc(1 << 16);
	if (!chunk) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	while ((n = read(fd, chunk, 1 << 16)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = al_error_set(AL_ERR_IO, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if ((rc = csv_counter_feed(&c, chunk, (size_t)n)))
			goto out;
	}
	rc = csv_counter_finish(&c, records, header);
out:
	free(chunk);
	csv_counter_free(&c);
	close(fd);
	return rc;
}
