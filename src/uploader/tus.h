/*
 * tus.h - the tus 1.0.0 resumable upload protocol (https://tus.io), served
 * as streaming routes of web/http_server: bodies go to disk chunk by chunk
 * and are never held in memory. docs/uploader.md describes the protocol as
 * implemented; in short:
 *
 *   OPTIONS <base>[/<id>]  Tus-Version, Tus-Extension, Tus-Max-Size,
 *                          Tus-Checksum-Algorithm
 *   POST    <base>         creation (Upload-Length or Upload-Defer-Length: 1,
 *                          Upload-Metadata, Upload-Concat), with upload
 *                          (a body of Content-Type application/offset+octet-stream)
 *   HEAD    <base>/<id>    Upload-Offset, Upload-Length, Upload-Metadata ...
 *   PATCH   <base>/<id>    Upload-Offset must match (409); Upload-Checksum
 *                          (460 on mismatch, nothing of the chunk kept)
 *   DELETE  <base>/<id>    termination
 *   GET     <base>         the caller's uploads and whether the datasource
 *                          is complete (JSON; not tus)
 *   POST    <base>/complete  "all files uploaded" (not tus)
 *
 * Extensions: creation, creation-with-upload, creation-defer-length,
 * termination, checksum, expiration, concatenation. X-HTTP-Method-Override
 * is honoured on POST. Every request but OPTIONS and GET must carry
 * Tus-Resumable: 1.0.0 (else 412 with Tus-Version); a browser cannot send
 * that header to another origin without a CORS preflight, which is never
 * granted, so it also guards the state-changing routes against cross-site
 * requests.
 *
 * Who may do what is the host's business (struct tus_host): the embedded
 * API (upload_embed.h) or the standalone `airlock uploader`. The host maps a
 * request to a datasource directory and a user; the engine keeps every upload
 * to its owner (another user's upload answers 404).
 *
 * Durability: an offset is acknowledged (204 with Upload-Offset) only once
 * its bytes are fdatasync'ed and the state recording it is written
 * atomically (upload_store.h). A long PATCH also makes what it received
 * durable every TUS_CHECKPOINT_BYTES (unless it carries a checksum, which
 * can only be verified at its end), and when the client goes away in the
 * middle, what arrived is kept, so a resume loses little.
 */
#ifndef AL_UPLOADER_TUS_H
#define AL_UPLOADER_TUS_H

#include <jansson.h>
#include <stdint.h>

#include "web/http_server.h"

#define TUS_EXTENSIONS \
	"creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation"
/* A PATCH with no checksum is made durable every this many bytes. */
#define TUS_CHECKPOINT_BYTES ((uint64_t)64 << 20)
#define TUS_DEFAULT_EXPIRE_SECONDS (24 * 3600)

struct tus_limits {
	uint64_t max_file_bytes;   /* Tus-Max-Size: one upload's length */
	uint64_t quota_bytes;      /* all uploads of one datasource */
	uint64_t max_files;        /* files (not partials) of one datasource */
	int64_t expire_seconds;    /* an unfinished upload expires this long after its last write */
};

/* What the host decided about one request (filled by tus_host.route). */
struct tus_route {
	char *dir;            /* the datasource's staging directory (NULL for OPTIONS) */
	char *base;           /* the collection's URL path, no trailing '/' */
	char *user;           /* the person asking (NULL for OPTIONS) */
	char *round;          /* tells completions apart across retries; NULL: one round */
	int writable;         /* 0: no creation, PATCH or DELETE: answer closed_status */
	int closed_status;    /* 403 or 409 */
	char *closed_message;
	int may_complete;     /* the user may say "all files uploaded" */
	void *host_ctx;       /* the host's, freed by route_free */
};

enum tus_route_result {
	TUS_ROUTE_PASS = 0,   /* not an upload route: leave it to the buffered handler */
	TUS_ROUTE_OK,         /* *out filled: the engine takes it */
	TUS_ROUTE_ANSWERED,   /* resp filled (401, 404 ...): sent as it is */
};

struct tus_host {
	/* Headers only. Authenticates the caller (except for OPTIONS, which the
	 * engine answers without a user), finds the datasource, and fills *out
	 * (its strings are new; route_free releases them). */
	enum tus_route_result (*route)(void *ud, const struct http_request *req, struct http_response *resp,
				       struct tus_route *out);
	/* After the store did "all files uploaded" (or found it done before):
	 * tell the rest of the system (the gates). AL_OK with *out_body NULL
	 * answers {"manifest": ...}; a body given is answered instead. An error
	 * is answered as it is; the request may be repeated (it is idempotent). */
	int (*completed)(void *ud, struct tus_route *rt, const json_t *record, json_t **out_body);
	void (*route_free)(void *ud, struct tus_route *rt);
};

struct tus;

/* host is copied; host_ud borrowed. */
int tus_new(struct tus **out, const struct tus_limits *limits, const struct tus_host *host, void *host_ud);
void tus_free(struct tus *t);

/* The streaming ops for http_server_start_stream; their userdata is the
 * struct tus. Requests the host passes go to the buffered handler. */
const struct http_stream_ops *tus_stream_ops(void);

/* "All files uploaded" for the datasource directory `dir`, outside a tus
 * request (the API's POST .../uploaded): takes the datasource's exclusive
 * lock (AL_ERR_CONFLICT at once while uploads are being written), and unless
 * it was done in this `round` already (then it is found again), refuses
 * while any upload is unfinished, writes the manifest and makes the files
 * read-only (upload_store_complete). *out_record (may be NULL) gets
 * completed.json. */
int tus_seal(const char *dir, const char *round, const char *by, json_t **out_record);

/* Limits (and the sweep period) from the environment, each overriding what
 * *lim already holds when set: AIRLOCK_UPLOAD_MAX_FILE_BYTES,
 * AIRLOCK_UPLOAD_QUOTA_BYTES, AIRLOCK_UPLOAD_MAX_FILES,
 * AIRLOCK_UPLOAD_EXPIRE_SECONDS, AIRLOCK_UPLOAD_SWEEP_SECONDS. When the sweep
 * period is not set it is a quarter of the expiry, between 1 s and 5 min.
 * AL_ERR_INVALID naming the variable when one is not a positive integer. */
int tus_limits_from_env(struct tus_limits *lim, int *sweep_seconds);

/* Removes the expired uploads of one datasource directory now. */
int tus_sweep_dir(struct tus *t, const char *dir, size_t *removed);

/* A thread that sweeps every `period_s` seconds: `root` itself (each_subdir
 * 0: the standalone uploader's one datasource) or every directory directly
 * under it (each_subdir 1: the embedded staging root). Stop it with
 * tus_sweeper_stop (NULL-safe), which waits for a sweep under way. */
struct tus_sweeper;
int tus_sweeper_start(struct tus_sweeper **out, struct tus *t, const char *root, int each_subdir, int period_s);
void tus_sweeper_stop(struct tus_sweeper *sw);

/* For tests: decides a PATCH from its headers and the upload's state (no
 * I/O). offset/length: the upload's (length -1 = deferred); hdr_offset,
 * hdr_length, content_length: the request's (-1 = absent). *out_limit gets
 * how many body bytes may arrive. Returns the HTTP status to answer at once
 * (400, 409, 413) with a message in al_error_message(), or 0 to go on;
 * *out_new_length gets the length to record (-1 still deferred). */
int tus_patch_decide(const struct tus_limits *lim, uint64_t offset, int64_t length, int64_t hdr_offset,
		     int64_t hdr_length, int64_t content_length, uint64_t quota_used, uint64_t *out_limit,
		     int64_t *out_new_length);

#endif
