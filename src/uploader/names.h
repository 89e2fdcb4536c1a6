/*
 * names.h - the file and folder names people give their uploads.
 *
 * An upload names the file it becomes with a relative path (the tus metadata
 * "relativePath", as a browser gives it for a file inside a dropped folder,
 * or else "filename"). That text comes from the client, so before it is used
 * as a path under the datasource's staging directory it must be a plain
 * relative path that cannot leave the directory or hide from the checks.
 * upload_name_check accepts a name only when all of these hold, and otherwise
 * refuses it (AL_ERR_INVALID) with a message naming the problem; it never
 * rewrites a name into something the person did not choose:
 *   - valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF);
 *   - no control characters (U+0000-U+001F, U+007F-U+009F) and no backslash
 *     (a Windows separator would mean a different path to different readers);
 *   - relative: not starting with '/';
 *   - '/'-separated segments, none empty ("a//b", a trailing '/'), none "."
 *     or "..", none starting with '.' (hidden names: the manifest, the checks
 *     and the reviewer do not see them, and ".uploads" is the uploader's own);
 *   - at most UPLOAD_NAME_MAX_SEGMENT bytes per segment, UPLOAD_NAME_MAX_BYTES
 *     in all and UPLOAD_NAME_MAX_DEPTH segments.
 * The name as sent is kept beside the upload (its metadata) either way.
 */
#ifndef AL_UPLOADER_NAMES_H
#define AL_UPLOADER_NAMES_H

#include <stddef.h>

#define UPLOAD_NAME_MAX_BYTES 1024
#define UPLOAD_NAME_MAX_SEGMENT 255
#define UPLOAD_NAME_MAX_DEPTH 16

/* Checks `len` bytes of `name` (binary-safe: a decoded metadata value may hold
 * a NUL, which is refused). `what` names the field in messages
 * ("relativePath"). AL_OK or AL_ERR_INVALID. */
int upload_name_check(const char *what, const char *name, size_t len);

/* The target path of an upload from its metadata: relativePath when given
 * (it includes the file's own name), else filename, which must then be a
 * single segment. Either may be NULL. *out is a new NUL-terminated string
 * (free it). AL_ERR_INVALID when neither is given or the chosen one fails
 * upload_name_check. */
int upload_name_from_metadata(const char *relative_path, size_t rp_len, const char *filename, size_t fn_len,
			      char **out);

#endif
