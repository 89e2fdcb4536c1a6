/*
 * Fuzz target for watch streams: the input is a watch body, fed through the
 * line splitter in chunks whose sizes the input's first bytes choose (a
 * stream arrives cut anywhere), every line parsed as an event, the path
 * kube_watch takes over bytes from the API server (or whoever sits between).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "kube/kube.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t lines;
	size_t max_line;
};

static int on_line(void *userdata, const char *line, size_t len)
{
	struct seen *s = userdata;
	char *type = NULL;
	json_t *obj = NULL;

	if (len > s->max_line || memchr(line, '\n', len))
		__builtin_trap(); /* the splitter's promises */
	s->lines++;
	if (kube_watch_event_parse(line, len, &type, &obj) == AL_OK) {
		if (!type || !json_is_object(obj))
			__builtin_trap();
		if (strcmp(type, "ADDED") && strcmp(type, "MODIFIED") && strcmp(type, "DELETED") &&
		    strcmp(type, "BOOKMARK") && strcmp(type, "ERROR"))
			__builtin_trap();
		(void)json_integer_value(json_object_get(obj, "code"));
		(void)json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
		free(type);
		json_decref(obj);
	} else if (type || obj) {
		__builtin_trap(); /* an error must leave the outputs NULL */
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kube_line_splitter *sp = NULL;
	struct seen s = { 0, 0 };
	const char *p;
	size_t left, step;
	int rc = AL_OK;

	if (size < 2)
		return 0;
	/* byte 0: the line limit (small limits reach the too-large paths);
	 * byte 1: the chunk size */
	s.max_line = data[0] < 16 ? (size_t)data[0] + 1 : KUBE_WATCH_LINE_MAX;
	step = (size_t)data[1] % 64 + 1;
	p = (const char *)data + 2;
	left = size - 2;
	if (kube_line_splitter_new(&sp, s.max_line, on_line, &s) != AL_OK)
		return 0;
	while (left && rc == AL_OK) {
		size_t n = left < step ? left : step;
		rc = kube_line_splitter_feed(sp, p, n);
		p += n;
		left -= n;
		step = step * 7 % 61 + 1; /* vary the cuts */
	}
	if (rc == AL_OK)
		rc = kube_line_splitter_flush(sp);
	if (rc != AL_OK && rc != AL_ERR_TOO_LARGE)
		__builtin_trap();
	if (rc != AL_OK && kube_line_splitter_feed(sp, "x\n", 2) != rc)
		__builtin_trap(); /* errors stick */
	kube_line_splitter_free(sp);
	return 0;
}
