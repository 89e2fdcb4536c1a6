/*
 * tus_parse.h - the request headers of the tus 1.0.0 protocol, parsed
 * strictly: whatever does not match the grammar is refused (AL_ERR_INVALID,
 * naming the header and what was wrong) before anything is changed. Every
 * parser is bounded (header length, number of pairs, parts) and binary-safe.
 * These parsers take text straight from the network: they have a libFuzzer
 * target (tests/fuzz/fuzz_tus_headers.c).
 *
 * Ownership: structs filled here own their memory; release them with their
 * _free function (safe on a zeroed struct, and after a failed parse).
 */
#ifndef AL_UPLOADER_TUS_PARSE_H
#define AL_UPLOADER_TUS_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define TUS_VERSION "1.0.0"
#define TUS_HEADER_MAX 16384       /* bytes of Upload-Metadata / Upload-Concat */
#define TUS_META_MAX_PAIRS 64
#define TUS_META_MAX_KEY 128
#define TUS_CONCAT_MAX_PARTS 1000
#define TUS_ID_LEN 32              /* upload ids: 32 lower-case hex digits */

/* A non-negative decimal integer (Upload-Length, Upload-Offset): digits
 * only, at most INT64_MAX. `what` names the header in the message. */
int tus_parse_uint(const char *what, const char *s, uint64_t *out);

/* Upload-Metadata: "key base64,key base64,key" (a key alone means an empty
 * value). Keys: printable ASCII without space or comma, unique. Values:
 * standard base64, padding optional. Decoded values are binary (a NUL is
 * possible): use value_len; each is also NUL-terminated. */
struct tus_meta_item {
	char *key;
	char *value;
	size_t value_len;
};
struct tus_meta {
	struct tus_meta_item *items;
	size_t n;
};
int tus_parse_metadata(const char *header, struct tus_meta *out);
/* The item named `key`, or NULL. */
const struct tus_meta_item *tus_meta_get(const struct tus_meta *m, const char *key);
void tus_meta_free(struct tus_meta *m);

/* Upload-Checksum: "<algorithm> <base64 digest>". */
enum tus_checksum_alg { TUS_CK_NONE = 0, TUS_CK_SHA1, TUS_CK_SHA256, TUS_CK_SHA512, TUS_CK_MD5 };
#define TUS_CHECKSUM_ALGORITHMS "sha1,sha256,sha512,md5"
struct tus_checksum {
	enum tus_checksum_alg alg;
	unsigned char digest[64];
	size_t len;              /* the algorithm's digest size */
};
/* AL_ERR_INVALID for a malformed header; AL_ERR_INVALID with a message
 * listing TUS_CHECKSUM_ALGORITHMS for an algorithm we do not have (tus:
 * 400 Bad Request either way). */
int tus_parse_checksum(const char *header, struct tus_checksum *out);
/* "sha1", ... */
const char *tus_checksum_name(enum tus_checksum_alg alg);

/* Upload-Concat: "partial", or "final;<url> <url> ..." where each URL (absolute
 * or a path) must name an upload of the collection at `base` (a URL path
 * without trailing '/'): its path is <base>/<id>. ids are copied. */
enum tus_concat_kind { TUS_CONCAT_NONE = 0, TUS_CONCAT_PARTIAL, TUS_CONCAT_FINAL };
struct tus_concat {
	enum tus_concat_kind kind;
	char **ids;              /* final only */
	size_t n;
};
int tus_parse_concat(const char *header, const char *base, struct tus_concat *out);
void tus_concat_free(struct tus_concat *c);

/* 1 if s is an upload id (TUS_ID_LEN lower-case hex digits). */
int tus_is_id(const char *s);

/* `t` (Unix seconds) as an RFC 7231 HTTP date, "Wed, 25 Jun 2014 16:00:00 GMT". */
#define TUS_HTTP_DATE_LEN 32
void tus_http_date(int64_t t, char out[TUS_HTTP_DATE_LEN]);

#endif
