/*
 * buf.h - bounded, growable byte buffer (in the spirit of git's strbuf and
 * curl's dynbuf). Every buffer has a hard maximum so untrusted input can
 * never grow it without limit. The content is always NUL-terminated.
 *
 * Ownership: a buf owns its memory; buf_free() releases it, buf_detach()
 * hands it to the caller (free() it).
 */
#ifndef AL_COMMON_BUF_H
#define AL_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *ptr;   /* NUL-terminated content, or NULL before first append */
	size_t len;  /* bytes used, excluding the terminator */
	size_t cap;  /* bytes allocated */
	size_t max;  /* hard cap on len; appends past it fail with AL_ERR_TOO_LARGE */
};

#define BUF_DEFAULT_MAX ((size_t)64 << 20)

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);  /* len = 0, memory kept */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_appends(struct buf *b, const char *s);
int buf_appendc(struct buf *b, char c);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vappendf(struct buf *b, const char *fmt, va_list ap);
/* Returns the content (never NULL, "" when empty) and leaves b empty. */
char *buf_detach(struct buf *b);
/* The content, "" when empty; valid until the next append. */
const char *buf_cstr(const struct buf *b);

#endif
