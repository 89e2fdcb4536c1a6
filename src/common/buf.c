#include "common/buf.h"
#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->ptr = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max ? max : BUF_DEFAULT_MAX;
}

void buf_free(struct buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->ptr)
		b->ptr[0] = '\0';
}

static int buf_grow(struct buf *b, size_t extra)
{
	size_t need, ncap;
	char *p;

	if (extra > b->max || b->len > b->max - extra)
		return al_error_set(AL_ERR_TOO_LARGE, "data exceeds the limit of %zu bytes", b->max);
	need = b->len + extra + 1;
	if (need <= b->cap)
		return AL_OK;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap = ncap > ((size_t)-1) / 2 ? need : ncap * 2;
	p = realloc(b->ptr, ncap);
	if (!p)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	b->ptr = p;
	b->cap = ncap;
	return AL_OK;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
	int rc = buf_grow(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->ptr + b->len, data, n);
	b->len += n;
	b->ptr[b->len] = '\0';
	return AL_OK;
}

int buf_appends(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_appendc(struct buf *b, char c)
{
	return buf_append(b, &c, 1);
}

int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n, rc;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return al_error_set(AL_ERR_INTERNAL, "bad format string");
	if ((rc = buf_grow(b, (size_t)n)))
		return rc;
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return AL_OK;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;
	va_start(ap, fmt);
	rc = buf_vappendf(b, fmt, ap);
	va_end(ap);
	return rc;
}

char *buf_detach(struct buf *b)
{
	char *p = b->ptr;
	if (!p) {
		p = calloc(1, 1);
	}
	b->ptr = NULL;
	b->len = b->cap = 0;
	return p;
}

const char *buf_cstr(const struct buf *b)
{
	return b->ptr ? b->ptr : "";
}
