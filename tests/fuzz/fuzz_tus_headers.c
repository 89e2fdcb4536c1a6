/*
 * libFuzzer target: the uploader's request headers and names, as they come
 * from the network. The input's first byte picks what the rest is fed to
 * (all of them for byte 0): Upload-Metadata, Upload-Checksum, Upload-Concat,
 * an integer header, a relative path. Each parser must never crash, hang or
 * leak, and must keep its promises: decoded metadata within the header's
 * size, a checksum of its algorithm's length, concat ids that are ids, an
 * accepted name that a second check accepts too.
 */
#include "common/error.h"
#include "uploader/names.h"
#include "uploader/tus_parse.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned which;
	char *s;

	if (size == 0)
		return 0;
	which = data[0] % 6;
	/* Headers are NUL-terminated text: libmicrohttpd never hands a NUL. */
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';

	if (which == 0 || which == 1) {
		struct tus_meta m;
		if (tus_parse_metadata(s, &m) == AL_OK) {
			for (size_t i = 0; i < m.n; i++) {
				if (!m.items[i].key[0] || m.items[i].value_len > strlen(s))
					__builtin_trap();
				if (tus_meta_get(&m, m.items[i].key) == NULL)
					__builtin_trap();
			}
			tus_meta_free(&m);
		}
	}
	if (which == 0 || which == 2) {
		struct tus_checksum c;
		if (tus_parse_checksum(s, &c) == AL_OK && (c.len == 0 || c.len > sizeof(c.digest) || c.alg == TUS_CK_NONE))
			__builtin_trap();
	}
	if (which == 0 || which == 3) {
		struct tus_concat c;
		if (tus_parse_concat(s, "/api/v1/datasources/d/uploads", &c) == AL_OK) {
			for (size_t i = 0; i < c.n; i++)
				if (!tus_is_id(c.ids[i]))
					__builtin_trap();
			tus_concat_free(&c);
		}
	}
	if (which == 0 || which == 4) {
		uint64_t v;
		if (tus_parse_uint("Upload-Offset", s, &v) == AL_OK && v > (uint64_t)INT64_MAX)
			__builtin_trap();
	}
	if (which == 0 || which == 5) {
		/* Names are binary-safe: the raw bytes, NULs included. */
		if (upload_name_check("relativePath", (const char *)data + 1, size - 1) == AL_OK) {
			if (memchr(data + 1, '\0', size - 1) || data[1] == '/' ||
			    upload_name_check("relativePath", (const char *)data + 1, size - 1) != AL_OK)
				__builtin_trap();
		}
	}
	free(s);
	return 0;
}
