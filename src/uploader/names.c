#include "uploader/names.h"

#include "common/error.h"
#include "common/util.h"

#include <string.h>

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when invalid.
 * *cp gets the code point. */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		min = 0x80;
		*cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		min = 0x800;
		*cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		min = 0x10000;
		*cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3F);
	}
	if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
		return 0;
	return len;
}

/* How many of the first len bytes of a valid UTF-8 string fit in max bytes
 * without cutting a character (messages quote names, and must stay UTF-8). */
static int quote_len(const char *s, size_t len, size_t max)
{
	size_t n = len < max ? len : max;
	while (n > 0 && n < len && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return (int)n;
}

static int check_segment(const char *what, const char *seg, size_t len, size_t index)
{
	if (len == 0)
		return al_error_set(AL_ERR_INVALID, "%s: segment %zu is empty (a leading, doubled or trailing '/')",
				    what, index + 1);
	if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
		return al_error_set(AL_ERR_INVALID, "%s: segment %zu is '%.*s': a path may not refer to itself or its parent",
				    what, index + 1, (int)len, seg);
	if (seg[0] == '.')
		return al_error_set(AL_ERR_INVALID,
				    "%s: '%.*s' starts with '.': hidden names are not accepted (the checks and the reviewers would not see them)",
				    what, quote_len(seg, len, 64), seg);
	if (len > UPLOAD_NAME_MAX_SEGMENT)
		return al_error_set(AL_ERR_INVALID, "%s: segment %zu is %zu bytes long; at most %d are allowed", what,
				    index + 1, len, UPLOAD_NAME_MAX_SEGMENT);
	return AL_OK;
}

int upload_name_check(const char *what, const char *name, size_t len)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t i, seg_start = 0, depth = 0;
	int rc;

	if (!name || len == 0)
		return al_error_set(AL_ERR_INVALID, "%s: the name is empty", what);
	if (len > UPLOAD_NAME_MAX_BYTES)
		return al_error_set(AL_ERR_INVALID, "%s: the name is %zu bytes long; at most %d are allowed", what, len,
				    UPLOAD_NAME_MAX_BYTES);
	/* Characters first, so that later messages may quote the name. */
	for (i = 0; i < len;) {
		unsigned cp;
		size_t n = utf8_next(s + i, len - i, &cp);
		if (n == 0)
			return al_error_set(AL_ERR_INVALID, "%s: byte %zu is not valid UTF-8", what, i + 1);
		if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
			return al_error_set(AL_ERR_INVALID, "%s: byte %zu is a control character (U+%04X)", what, i + 1, cp);
		if (cp == '\\')
			return al_error_set(AL_ERR_INVALID, "%s: byte %zu is a backslash; folders are separated by '/'", what,
					    i + 1);
		i += n;
	}
	if (name[0] == '/')
		return al_error_set(AL_ERR_INVALID, "%s: '%.*s' is an absolute path; send a path relative to the upload",
				    what, quote_len(name, len, 64), name);
	for (i = 0; i < len; i++) {
		if (name[i] != '/')
			continue;
		if ((rc = check_segment(what, name + seg_start, i - seg_start, depth)))
			return rc;
		depth++;
		seg_start = i + 1;
	}
	if ((rc = check_segment(what, name + seg_start, len - seg_start, depth)))
		return rc;
	depth++;
	if (depth > UPLOAD_NAME_MAX_DEPTH)
		return al_error_set(AL_ERR_INVALID, "%s: %zu folder levels; at most %d are allowed", what, depth,
				    UPLOAD_NAME_MAX_DEPTH);
	return AL_OK;
}

int upload_name_from_metadata(const char *relative_path, size_t rp_len, const char *filename, size_t fn_len,
			      char **out)
{
	int rc;

	*out = NULL;
	if (relative_path && rp_len) {
		if ((rc = upload_name_check("relativePath", relative_path, rp_len)))
			return rc;
		*out = util_strndup(relative_path, rp_len);
	} else if (filename && fn_len) {
		if ((rc = upload_name_check("filename", filename, fn_len)))
			return rc;
		if (memchr(filename, '/', fn_len))
			return al_error_set(AL_ERR_INVALID,
					    "filename: '%.*s' contains '/'; a file in a folder is named by relativePath",
					    quote_len(filename, fn_len, 64), filename);
		*out = util_strndup(filename, fn_len);
	} else {
		return al_error_set(AL_ERR_INVALID,
				    "Upload-Metadata must name the file: send 'filename' (and 'relativePath' for a file in a folder), base64-encoded");
	}
	return *out ? AL_OK : al_error_set(AL_ERR_NOMEM, "out of memory");
}
