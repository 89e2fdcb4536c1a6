/*
 * source_https.h - files over HTTPS for the job runner (type "https").
 *
 * The connection url is a base url ("https://files.example.org/exports/");
 * each spec.objects[].table.name is a path relative to it (the runner names
 * the output file after its last segment). Each path segment is
 * percent-encoded as a literal name ('%' too), a base url's query string
 * (a pre-signed token, say) is appended to every object's url, and ".."
 * segments are refused.
 *
 * What it promises, beyond source.h:
 *  - https only (http:// only when the environment has AIRLOCK_ALLOW_HTTP=1,
 *    for tests); TLS verification is always on; AIRLOCK_CA_FILE names an
 *    extra PEM bundle trusted besides the system's CAs;
 *  - credentials: user + password -> HTTP basic auth; password alone -> a
 *    bearer token ("Authorization: Bearer <password>"); neither -> none.
 *    They are never sent to another host: at most 3 redirects are followed,
 *    and libcurl drops the credentials when a redirect leaves the host;
 *  - a download continues a kept ".part" file (HTTP Range + If-Range) when
 *    the server supports ranges and the file's validator (a strong ETag,
 *    else Last-Modified), remembered in "<part>.meta", is unchanged;
 *    otherwise it starts again. The sidecar goes when the download succeeds;
 *  - the size is checked against Content-Length / Content-Range, and the
 *    sha256 against Repr-Digest (RFC 9530), Digest (RFC 3230) or, for a whole
 *    200 response, Content-Digest, when the server sends one. A mismatch is
 *    AL_ERR_IO and the .part (being wrong) is deleted;
 *  - messages and descriptions name only scheme, host, port and path: never
 *    the query string, user info or credentials.
 *
 * The helpers below are pure (no network) so they can be unit tested; the
 * curl setup is shared with source_databricks.c.
 */
#ifndef AL_RUNNER_SOURCE_HTTPS_H
#define AL_RUNNER_SOURCE_HTTPS_H

#include "common/buf.h"
#include "net/curl_dl.h"
#include "runner/source.h"

#include <stdint.h>

#define SOURCE_HTTPS_DEFAULT_TIMEOUT_S 30
#define SOURCE_HTTPS_MAX_REDIRECTS 3L

/* A parsed http(s) url. Every string is owned (source_https_url_free). */
struct source_https_url {
	char *scheme; /* "https" (or "http"), lower case */
	char *host;   /* as written; an IPv6 literal keeps its brackets */
	int port;     /* 0 when the url gives none */
	char *path;   /* starts with '/', never empty */
	char *query;  /* after '?', without it; NULL when none */
};

/* Parses url. Refuses anything but https (http when allow_http), user info
 * ("user:pass@": credentials belong in the Secret), a bad port, an empty host
 * or control characters. Messages never quote the url (it may carry a token). */
int source_https_url_parse(const char *url, int allow_http, struct source_https_url *out);
void source_https_url_free(struct source_https_url *u);
/* "https://host[:port]/path": for messages and provenance (no query). */
int source_https_url_display(const struct source_https_url *u, struct buf *out);
/* The url of `object` relative to the base: the base path up to its last
 * '/', then each segment of object percent-encoded (RFC 3986 unreserved
 * characters and '/' kept), then "?query" of the base. Refuses an empty
 * object, a leading '/', empty, "." or ".." segments. *display (may be NULL)
 * gets the same without the query. */
int source_https_url_object(const struct source_https_url *base, const char *object, struct buf *url,
			    struct buf *display);

/* Looks for a sha-256 in one response header. name is the header's name
 * (any case): "Repr-Digest" / "Content-Digest" (RFC 9530 dictionary,
 * sha-256=:<base64>:) or "Digest" (RFC 3230, SHA-256=<base64>). Returns 1
 * and fills out when found, 0 when the header has no sha-256 (or another
 * name), AL_ERR_INVALID when its sha-256 is malformed. */
int source_https_digest_parse(const char *name, const char *value, unsigned char out[32]);

/* Standard base64 (RFC 4648, '=' padding optional) into out (cap bytes).
 * Returns the decoded length or AL_ERR_INVALID. */
int source_https_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap);

/* Parses "bytes FIRST-LAST/TOTAL" (TOTAL may be '*': *total = 0). */
int source_https_content_range(const char *value, uint64_t *first, uint64_t *last, uint64_t *total);

/* What <part>.meta remembers of the response a .part came from. */
struct source_https_meta {
	char url_sha256[65];   /* sha256 hex of the object's full url (not the url: it may hold a token) */
	char *etag;            /* as the server sent it, or NULL */
	char *last_modified;   /* or NULL */
	uint64_t size;         /* announced total, 0 when unknown */
	int ranges;            /* the server said Accept-Ranges: bytes */
};

void source_https_meta_free(struct source_https_meta *m);
/* To/from the sidecar's JSON text. */
int source_https_meta_format(const struct source_https_meta *m, char **json);
int source_https_meta_parse(const char *json, size_t len, struct source_https_meta *out);

/* The validator to send as If-Range for continuing a .part of part_size
 * bytes, or NULL to start again: the sidecar must belong to this url, the
 * server must have said it serves ranges, the prefix must be non-empty and
 * shorter than the announced size, and there must be a strong ETag (a weak
 * one cannot be used with If-Range) or else a Last-Modified date. */
const char *source_https_resume_validator(const struct source_https_meta *m, const char *url_sha256,
					  uint64_t part_size);

/* How to take a response body when `offset` bytes were asked to be skipped
 * (0 = whole file). */
enum source_https_body {
	SOURCE_HTTPS_BODY_FRESH,   /* 200: the whole file, write from byte 0 */
	SOURCE_HTTPS_BODY_APPEND,  /* 206 starting exactly at offset: append */
	SOURCE_HTTPS_BODY_RESTART, /* 416, or a 206 that does not fit: ask again without a range */
	SOURCE_HTTPS_BODY_REFUSE,  /* any other status: not the file */
};
/* content_range may be NULL. *total gets the announced whole size when
 * the response tells it (Content-Range total for 206), else is left alone. */
enum source_https_body source_https_body_plan(long status, uint64_t offset, const char *content_range,
					      uint64_t *total);

/* Common libcurl settings for every request of the runner's HTTP sources:
 * protocols https (plus http when allow_http), TLS peer and host
 * verification on, AIRLOCK_CA_FILE as an extra CA bundle, connect timeout
 * and a stall limit of timeout_s, no signals, at most
 * SOURCE_HTTPS_MAX_REDIRECTS redirects (follow_redirects) that never carry
 * credentials to another host, errbuf (CURL_ERROR_SIZE bytes) for
 * messages. */
int source_https_curl_setup(const struct curl_dl *cu, CURL *curl, char *errbuf, int allow_http, int timeout_s,
			    int follow_redirects);
/* AIRLOCK_ALLOW_HTTP=1 in the environment. */
int source_https_allow_http(void);
/* Maps a failed transfer to an error code and sets a message
 * "<what>: <curl's reason>" (curl's text holds host names, never
 * credentials; the url is never included). */
int source_https_curl_error(const struct curl_dl *cu, CURLcode cc, const char *errbuf, const char *what);

#endif
