/*
 * lines.c - the watch stream's line splitter.
 *
 * A watch body arrives in chunks cut anywhere (mid-line, mid-"\r\n"). Whole
 * lines inside a chunk are handed over in place; only a line that straddles
 * chunks is copied, into a buffer that grows up to max_line and no further,
 * so a server that never sends a newline cannot make us allocate without
 * bound.
 */
#include "kube/kube.h"

#include "common/buf.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

struct kube_line_splitter {
	struct buf pending; /* the start of a line whose end has not arrived */
	size_t max_line;
	kube_line_fn fn;
	void *userdata;
	int result; /* sticky: the first non-zero result */
};

int kube_line_splitter_new(struct kube_line_splitter **out, size_t max_line, kube_line_fn fn, void *userdata)
{
	struct kube_line_splitter *s;

	if (!out || !fn || max_line == 0)
		return al_error_set(AL_ERR_INVALID, "kube_line_splitter_new: need an output, a callback and max_line > 0");
	*out = NULL;
	if (!(s = calloc(1, sizeof(*s))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	/* +1: the '\r' of a "\r\n" may sit in the buffer before being trimmed */
	buf_init(&s->pending, max_line + 1);
	s->max_line = max_line;
	s->fn = fn;
	s->userdata = userdata;
	*out = s;
	return AL_OK;
}

void kube_line_splitter_free(struct kube_line_splitter *s)
{
	if (!s)
		return;
	buf_free(&s->pending);
	free(s);
}

static int too_long(struct kube_line_splitter *s)
{
	return al_error_set(AL_ERR_TOO_LARGE,
			    "a watch line is longer than %zu bytes: the object is too large to watch", s->max_line);
}

/* Delivers line[0..len) (its '\n' already removed). */
static int deliver(struct kube_line_splitter *s, const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > s->max_line)
		return too_long(s);
	return s->fn(s->userdata, line, len);
}

int kube_line_splitter_feed(struct kube_line_splitter *s, const char *data, size_t len)
{
	const char *p = data, *end = data + len;
	int rc;

	if (!s)
		return al_error_set(AL_ERR_INVALID, "kube_line_splitter_feed: no splitter");
	if (s->result)
		return s->result;
	if (len == 0)
		return AL_OK;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t seg = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (!nl) {
			/* Keep the partial line. One byte over max_line is allowed
			 * here: it may be the '\r' of a "\r\n"; deliver() decides. */
			if (s->pending.len + seg > s->max_line + 1) {
				rc = too_long(s);
				goto fail;
			}
			if ((rc = buf_append(&s->pending, p, seg)) < 0)
				goto fail;
			return AL_OK;
		}
		if (s->pending.len) {
			if (s->pending.len + seg > s->max_line + 1) {
				rc = too_long(s);
				goto fail;
			}
			if ((rc = buf_append(&s->pending, p, seg)) < 0)
				goto fail;
			rc = deliver(s, s->pending.ptr, s->pending.len);
			buf_reset(&s->pending);
		} else {
			rc = deliver(s, p, seg);
		}
		if (rc)
			goto fail;
		p = nl + 1;
	}
	return AL_OK;
fail:
	s->result = rc;
	buf_free(&s->pending);
	return rc;
}

int kube_line_splitter_flush(struct kube_line_splitter *s)
{
	int rc;

	if (!s)
		return al_error_set(AL_ERR_INVALID, "kube_line_splitter_flush: no splitter");
	if (s->result)
		return s->result;
	if (!s->pending.len)
		return AL_OK;
	rc = deliver(s, s->pending.ptr, s->pending.len);
	buf_reset(&s->pending);
	if (rc) {
		s->result = rc;
		buf_free(&s->pending);
	}
	return rc;
}
