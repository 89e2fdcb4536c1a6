/*
 * util.h - small helpers shared by every subsystem: time stamps, hashing,
 * random identifiers, percent-decoding and crash-safe file writes.
 *
 * Crash safety: util_write_file_atomic() writes a temporary file in the same
 * directory, fsyncs it, renames it over the target and fsyncs the directory,
 * so a reader sees either the old or the new content, never a torn file.
 */
#ifndef AL_COMMON_UTIL_H
#define AL_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define UTIL_SHA256_HEX_LEN 64
#define UTIL_TIME_LEN 32 /* RFC 3339 UTC with milliseconds, e.g. 2026-11-24T05:19:00.123Z */

/* Percent-decoding, shared by every url and form parser (runner connection
 * urls, web forms, query strings). UTIL_PCT_PLUS: '+' is a space (forms and
 * query strings), otherwise it stays '+'. */
#define UTIL_PCT_PLUS 1u
/* The value of a hex digit (either case), or -1. */
int util_hex_value(int c);
/* Decodes s[0..n) into a new NUL-terminated string *out (free it); its
 * length in *out_len when out_len is not NULL. AL_ERR_INVALID (message
 * "bad %-escape ...": callers who can name the part set their own) when a
 * '%' is not followed by two hex digits or an escape decodes to a NUL byte;
 * AL_ERR_NOMEM. *out is NULL on any error. */
int util_percent_decode(const char *s, size_t n, unsigned flags, char **out, size_t *out_len);

/* Current UTC time as RFC 3339 ("2026-11-24T05:19:00Z" style, ms precision). */
void util_now_rfc3339(char out[UTIL_TIME_LEN]);
/* Seconds precision, as Kubernetes writes creationTimestamp. */
void util_now_rfc3339_seconds(char out[UTIL_TIME_LEN]);
/* Milliseconds on a monotonic clock. */
int64_t util_monotonic_ms(void);
/* Parses an RFC 3339 UTC/offset timestamp into Unix seconds. */
int util_parse_rfc3339(const char *s, int64_t *out);

/* Lower-case hex SHA-256 of a memory block. out must hold 65 bytes. */
void util_sha256_hex(const void *data, size_t len, char out[UTIL_SHA256_HEX_LEN + 1]);
/* SHA-256 of a file, streamed; also returns its size. */
int util_sha256_file(const char *path, char out[UTIL_SHA256_HEX_LEN + 1], uint64_t *size);

/* `nbytes` random bytes from libsodium, hex-encoded into a new string (free it). */
char *util_random_hex(size_t nbytes);
/* A Kubernetes-style UUID v4 string (free it). */
char *util_uuid4(void);

/* mkdir -p with `mode` for created directories. */
int util_mkdir_p(const char *path, mode_t mode);
/* rm -rf; a missing path is success. Refuses "/" and "". */
int util_remove_tree(const char *path);
/* Crash-safe replace of `path` (see above). */
int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file (at most `max` bytes) into a new NUL-terminated string. */
int util_read_file(const char *path, size_t max, char **out, size_t *out_len);
/* fsync a directory so a rename or create in it is durable. */
int util_fsync_dir(const char *dir);
int util_path_exists(const char *path);
/* Joins two path parts with one '/', into a new string (free it). NULL on OOM. */
char *util_path_join(const char *a, const char *b);

/* 1 if a relative path has a ".." segment or is absolute (could escape a root). */
int util_path_escapes(const char *rel);

/* Duplicates a string; NULL in -> NULL out; aborts never, returns NULL on OOM. */
char *util_strdup(const char *s);
/* The first n bytes of s (fewer if s ends sooner) as a new string; NULL on OOM or s NULL. */
char *util_strndup(const char *s, size_t n);

#endif
