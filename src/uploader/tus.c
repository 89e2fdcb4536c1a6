#include "uploader/tus.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "uploader/names.h"
#include "uploader/tus_parse.h"
#include "uploader/upload_store.h"
#include "uploader/writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define OFFSET_CT "application/offset+octet-stream"

struct tus {
	struct tus_limits lim;
	struct tus_host host;
	void *host_ud;
};

/* One streaming request (a PATCH, or a creation with upload). */
struct tus_req {
	struct tus *t;
	struct tus_route rt;
	int have_route;
	struct upload_store *st;
	int store_lock;           /* shared datasource lock */
	int upload_lock;
	struct upload u;
	int have_upload;
	int creating;             /* answer 201 with Location */
	int fd;                   /* data.part */
	uint64_t committed;       /* durable and recorded */
	struct sha256_run committed_hash;
	struct sha256_run hash;   /* covers pos bytes */
	int64_t new_length;       /* to record (a deferred length set by this PATCH) */
	uint64_t pos;             /* bytes received: the offset of the next byte */
	uint64_t limit_end;       /* pos may not pass it */
	int direct;               /* fd is O_DIRECT: aligned writes, no page cache */
	struct writer *w;         /* writes fd on its own thread */
	EVP_MD_CTX *ck_ctx;
	struct tus_checksum ck;
	int ended;                /* on_end ran */
	int failed;               /* answered an error mid-body (rolled back) */
};

/* ---- answers ---------------------------------------------------------------- */

static const char *status_code_name(int status)
{
	switch (status) {
	case 400: return "invalid";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 409: return "conflict";
	case 410: return "gone";
	case 412: return "precondition_failed";
	case 413: return "too_large";
	case 415: return "unsupported_media_type";
	case 423: return "locked";
	case 460: return "checksum_mismatch";
	case 507: return "insufficient_storage";
	default: return status >= 500 ? "internal" : "error";
	}
}

static void common_headers(struct http_response *resp)
{
	http_response_header(resp, "Tus-Resumable", TUS_VERSION);
}

static void answer_error(struct http_response *resp, int status, const char *message)
{
	json_t *o = json_pack("{s:{s:s, s:s, s:i}}", "error", "code", status_code_name(status), "message",
			      message && *message ? message : status_code_name(status), "status", status);
	if (!o)
		o = json_pack("{s:{s:s, s:s, s:i}}", "error", "code", status_code_name(status), "message",
			      "(the message was not valid UTF-8)", "status", status);
	http_response_json(resp, status, o);
	common_headers(resp);
	if (status == 412)
		http_response_header(resp, "Tus-Version", TUS_VERSION);
}

/* The status a failed store call answers. */
static int status_of(int rc)
{
	switch (rc) {
	case AL_ERR_UNAVAILABLE: return 423;
	case AL_ERR_EXISTS: return 409;
	default: return al_error_http_status(rc);
	}
}

static void answer_rc(struct http_response *resp, int rc)
{
	answer_error(resp, status_of(rc), al_error_message());
}

static void answer_empty(struct http_response *resp, int status)
{
	http_response_bytes(resp, status, NULL, NULL, 0);
	common_headers(resp);
}

static void header_u64(struct http_response *resp, const char *name, uint64_t v)
{
	char n[32];
	snprintf(n, sizeof(n), "%llu", (unsigned long long)v);
	http_response_header(resp, name, n);
}

static void header_expires(struct http_response *resp, const struct upload *u)
{
	char d[TUS_HTTP_DATE_LEN];
	if (u->complete || !u->expires)
		return;
	tus_http_date(u->expires, d);
	http_response_header(resp, "Upload-Expires", d);
}

static int header_location(struct http_response *resp, const struct tus_route *rt, const char *id)
{
	struct buf b;
	int rc;
	buf_init(&b, 8192);
	rc = buf_appendf(&b, "%s/%s", rt->base, id);
	if (!rc)
		rc = http_response_header(resp, "Location", b.ptr);
	buf_free(&b);
	return rc;
}

/* ---- small helpers -------------------------------------------------------- */

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* -1 when absent; -2 when not a number (message set). */
static int64_t header_int(const struct http_request *req, const char *name)
{
	const char *v = http_request_header(req, name);
	uint64_t n;
	if (!v)
		return -1;
	if (tus_parse_uint(name, v, &n))
		return -2;
	return (int64_t)n;
}

static int content_type_is_offset(const struct http_request *req)
{
	const char *ct = http_request_header(req, "Content-Type");
	size_t n = strlen(OFFSET_CT);
	if (!ct)
		return 0;
	while (*ct == ' ')
		ct++;
	return !strncasecmp(ct, OFFSET_CT, n) && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static void route_release(struct tus *t, struct tus_route *rt)
{
	if (t->host.route_free)
		t->host.route_free(t->host_ud, rt);
	free(rt->dir);
	free(rt->base);
	free(rt->user);
	free(rt->round);
	free(rt->closed_message);
	memset(rt, 0, sizeof(*rt));
}

/* 1 when "all files uploaded" was said in this round: the files are read-only. */
static int completed_in_round(struct upload_store *st, const struct tus_route *rt)
{
	json_t *rec = NULL;
	const char *r;
	int same;
	if (upload_store_completion(st, &rec))
		return 0;
	r = json_string_value(json_object_get(rec, "round"));
	same = (!r && !rt->round) || (r && rt->round && !strcmp(r, rt->round));
	json_decref(rec);
	return same;
}

/* Answers when writes are closed; 0 when they are open. */
static int writes_closed(struct tus_route *rt, struct upload_store *st, struct http_response *resp)
{
	if (!rt->writable) {
		answer_error(resp, rt->closed_status ? rt->closed_status : 409,
			     rt->closed_message ? rt->closed_message : "this datasource takes no uploads now");
		return 1;
	}
	if (st && completed_in_round(st, rt)) {
		answer_error(resp, 403, "all files of this datasource have been uploaded: they are read-only now");
		return 1;
	}
	return 0;
}

static int expired(const struct upload *u)
{
	return !u->complete && u->expires && u->expires <= now_s();
}

/* Opens the store and loads the caller's upload `id`; answers and returns
 * non-zero when that is not possible (404 for another user's upload). */
static int load_own(struct tus_route *rt, const char *id, struct upload_store **st, struct upload *u,
		    struct http_response *resp)
{
	int rc;
	*st = NULL;
	if ((rc = upload_store_open(st, rt->dir, 0)) || (rc = upload_load(*st, id, u))) {
		if (rc == AL_ERR_NOT_FOUND)
			answer_error(resp, 404, "no such upload");
		else
			answer_rc(resp, rc);
		upload_store_close(*st);
		*st = NULL;
		return 1;
	}
	if (!u->owner || !rt->user || strcmp(u->owner, rt->user)) {
		upload_free(u);
		upload_store_close(*st);
		*st = NULL;
		answer_error(resp, 404, "no such upload");
		return 1;
	}
	return 0;
}

/* ---- the decision on a PATCH ----------------------------------------------- */

int tus_patch_decide(const struct tus_limits *lim, uint64_t offset, int64_t length, int64_t hdr_offset,
		     int64_t hdr_length, int64_t content_length, uint64_t quota_used, uint64_t *out_limit,
		     int64_t *out_new_length)
{
	int64_t new_length = length;
	uint64_t limit;

	*out_limit = 0;
	*out_new_length = length;
	if (hdr_offset < 0) {
		al_error_set(AL_ERR_INVALID, "Upload-Offset: the header is required, with the offset the upload is at (HEAD tells it)");
		return 400;
	}
	if ((uint64_t)hdr_offset != offset) {
		al_error_set(AL_ERR_CONFLICT, "Upload-Offset is %lld but the upload is at %llu: ask with HEAD and resume from there",
			     (long long)hdr_offset, (unsigned long long)offset);
		return 409;
	}
	if (hdr_length >= 0) {
		if (length >= 0 && hdr_length != length) {
			al_error_set(AL_ERR_INVALID, "Upload-Length: the length is %lld and cannot change", (long long)length);
			return 400;
		}
		if (length < 0) {
			if ((uint64_t)hdr_length < offset) {
				al_error_set(AL_ERR_INVALID, "Upload-Length: %lld is less than the %llu bytes already received",
					     (long long)hdr_length, (unsigned long long)offset);
				return 400;
			}
			if ((uint64_t)hdr_length > lim->max_file_bytes) {
				al_error_set(AL_ERR_TOO_LARGE, "the file is %lld bytes; the limit per file is %llu bytes",
					     (long long)hdr_length, (unsigned long long)lim->max_file_bytes);
				return 413;
			}
			if (quota_used - offset + (uint64_t)hdr_length > lim->quota_bytes) {
				al_error_set(AL_ERR_TOO_LARGE,
					     "this datasource's quota is %llu bytes and %llu are taken: a file of %lld bytes does not fit",
					     (unsigned long long)lim->quota_bytes, (unsigned long long)(quota_used - offset),
					     (long long)hdr_length);
				return 413;
			}
			new_length = hdr_length;
		}
	}
	if (new_length >= 0) {
		limit = (uint64_t)new_length - offset;
	} else {
		uint64_t by_file = lim->max_file_bytes > offset ? lim->max_file_bytes - offset : 0;
		uint64_t by_quota = lim->quota_bytes > quota_used ? lim->quota_bytes - quota_used : 0;
		limit = by_file < by_quota ? by_file : by_quota;
	}
	if (content_length >= 0 && (uint64_t)content_length > limit) {
		if (new_length >= 0)
			al_error_set(AL_ERR_TOO_LARGE, "the body of %lld bytes would go past the upload's length of %lld bytes",
				     (long long)content_length, (long long)new_length);
		else
			al_error_set(AL_ERR_TOO_LARGE, "the body of %lld bytes would go past the limits (%llu bytes more fit)",
				     (long long)content_length, (unsigned long long)limit);
		return 413;
	}
	*out_limit = limit;
	*out_new_length = new_length;
	return 0;
}

/* ---- the streaming write path --------------------------------------------- */

static void release_upload(struct tus_req *r);

static void req_free(struct tus_req *r)
{
	if (!r)
		return;
	release_upload(r);
	if (r->have_upload)
		upload_free(&r->u);
	upload_store_close(r->st);
	if (r->have_route)
		route_release(r->t, &r->rt);
	EVP_MD_CTX_free(r->ck_ctx);
	free(r);
}

/* The bytes of the file's block before `offset` that an O_DIRECT writer
 * writes again (none without O_DIRECT). */
static int block_prefix(struct tus_req *r, uint64_t offset, char prefix[UPLOAD_DIRECT_ALIGN], size_t *len)
{
	*len = r->direct ? (size_t)(offset % UPLOAD_DIRECT_ALIGN) : 0;
	return *len ? upload_data_read(r->st, &r->u, offset - *len, prefix, *len) : AL_OK;
}

/* Drops what arrived after the last commit. */
static void rollback(struct tus_req *r)
{
	char prefix[UPLOAD_DIRECT_ALIGN];
	size_t plen = 0;

	if (!r->w)
		return;
	r->hash = r->committed_hash;
	r->pos = r->committed;
	if (block_prefix(r, r->committed, prefix, &plen) || writer_reset(r->w, r->committed, prefix, plen)) {
		/* Nothing more may be written through it. */
		log_warn("upload %s: %s", r->u.id, al_error_message());
		writer_close(r->w);
		r->w = NULL;
		if (ftruncate(r->fd, (off_t)r->committed) < 0)
			log_warn("upload %s: cannot cut back to %llu: %s", r->u.id, (unsigned long long)r->committed,
				 strerror(errno));
	}
}

/* Makes everything received durable and records it. */
static int commit(struct tus_req *r)
{
	int rc, done;

	if (r->u.complete)
		return AL_OK;
	if (!r->w)
		return al_error_set(AL_ERR_IO, "upload %s cannot be written any more", r->u.id);
	if ((rc = writer_sync(r->w)))
		return rc;
	r->u.offset = r->pos;
	r->u.hash = r->hash;
	r->u.length = r->new_length;
	r->u.expires = now_s() + r->t->lim.expire_seconds;
	done = r->u.length >= 0 && r->u.offset == (uint64_t)r->u.length;
	if (done) {
		/* The data file is complete: no more writes through this fd. */
		sha256_run_hex(&r->u.hash, r->u.sha256);
	}
	/* The offset (and, when every byte is in, the digest) first: from here
	 * these bytes are acknowledged, whatever happens to the placing. */
	if ((rc = upload_save(r->st, &r->u))) {
		r->u.sha256[0] = '\0';
		return rc;
	}
	r->committed = r->pos;
	r->committed_hash = r->hash;
	if (done) {
		if ((rc = upload_place(r->st, &r->u)))
			return rc;
		log_info("upload %s complete: '%s', %lld bytes, sha256 %s", r->u.id, r->u.path ? r->u.path : "(partial)",
			 (long long)r->u.length, r->u.sha256);
	}
	return AL_OK;
}

/* Ends the request's hold on the upload: the writer, the data file and
 * both locks. Called once the answer is decided and before it is filled
 * in: the server sends the answer as soon as on_end (or a failing on_data)
 * returns, and calls on_close only after the client has it, so a client
 * that sends its next PATCH at once would otherwise find the upload still
 * locked (423). Leaves r for req_free. */
static void release_upload(struct tus_req *r)
{
	writer_close(r->w);
	r->w = NULL;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	upload_unlock(r->upload_lock);
	r->upload_lock = -1;
	upload_store_unlock(r->store_lock);
	r->store_lock = -1;
}

static int fail_mid_body(struct tus_req *r, struct http_response *resp, int status, const char *message)
{
	rollback(r);
	release_upload(r);
	r->failed = 1;
	answer_error(resp, status, message);
	if (r->creating)
		header_location(resp, &r->rt, r->u.id);
	return 1;
}

static int on_data(void *ctx, const struct http_request *req, const char *data, size_t len,
		   struct http_response *resp)
{
	struct tus_req *r = ctx;
	int rc;

	(void)req;
	if (r->failed)
		return 1;
	if (len > r->limit_end - r->pos) {
		char msg[200];
		if (r->new_length >= 0)
			snprintf(msg, sizeof(msg), "the body goes past the upload's length of %lld bytes", (long long)r->new_length);
		else
			snprintf(msg, sizeof(msg), "the body goes past the limits of this datasource (%llu bytes fit)",
				 (unsigned long long)(r->limit_end - r->committed));
		return fail_mid_body(r, resp, 413, msg);
	}
	sha256_run_update(&r->hash, data, len);
	if (r->ck_ctx && EVP_DigestUpdate(r->ck_ctx, data, len) != 1)
		return fail_mid_body(r, resp, 500, "cannot compute the checksum");
	if (!r->w)
		return fail_mid_body(r, resp, 500, "the upload cannot be written any more");
	if ((rc = writer_append(r->w, data, len)))
		return fail_mid_body(r, resp, rc == AL_ERR_TOO_LARGE ? 507 : 500, al_error_message());
	r->pos += len;
	/* A checksum can only be verified at the end: nothing is kept before. */
	if (!r->ck_ctx && r->pos - r->committed >= TUS_CHECKPOINT_BYTES && (rc = commit(r)))
		return fail_mid_body(r, resp, rc == AL_ERR_TOO_LARGE ? 507 : status_of(rc), al_error_message());
	return 0;
}

static void on_end(void *ctx, const struct http_request *req, struct http_response *resp)
{
	struct tus_req *r = ctx;
	int rc;

	(void)req;
	r->ended = 1;
	if (r->failed)
		return;
	if (r->ck_ctx) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		if (EVP_DigestFinal_ex(r->ck_ctx, md, &mdlen) != 1 || mdlen != r->ck.len ||
		    memcmp(md, r->ck.digest, mdlen)) {
			char msg[160];
			snprintf(msg, sizeof(msg), "the %s checksum of the %llu bytes received does not match Upload-Checksum: nothing of them was kept",
				 tus_checksum_name(r->ck.alg), (unsigned long long)(r->pos - r->committed));
			fail_mid_body(r, resp, 460, msg);
			return;
		}
	}
	if ((rc = commit(r))) {
		fail_mid_body(r, resp, rc == AL_ERR_TOO_LARGE ? 507 : status_of(rc), al_error_message());
		return;
	}
	release_upload(r);
	answer_empty(resp, r->creating ? 201 : 204);
	if (r->creating)
		header_location(resp, &r->rt, r->u.id);
	header_u64(resp, "Upload-Offset", r->u.offset);
	header_expires(resp, &r->u);
}

static void on_close(void *ctx)
{
	struct tus_req *r = ctx;

	if (r->fd >= 0 && !r->ended && !r->failed) {
		/* The client went away in the middle of the body. Without a
		 * checksum every byte that arrived is good: keep it, so the
		 * resume starts there. */
		if (!r->ck_ctx && r->pos > r->committed) {
			if (commit(r))
				log_warn("upload %s: cannot keep the bytes of an interrupted request: %s", r->u.id,
					 al_error_message());
			else
				log_info("upload %s: request interrupted; kept %llu bytes", r->u.id,
					 (unsigned long long)r->u.offset);
		} else {
			rollback(r);
		}
	}
	req_free(r);
}

/* Sets up the write of a body at the upload's offset; r owns the store,
 * locks and upload by now. Returns 0, or an HTTP status (message set). */
static int start_body(struct tus_req *r, const struct http_request *req, uint64_t limit)
{
	const char *ck = http_request_header(req, "Upload-Checksum");
	int rc;

	if (ck) {
		const EVP_MD *md = NULL;
		if ((rc = tus_parse_checksum(ck, &r->ck)))
			return 400;
		switch (r->ck.alg) {
		case TUS_CK_SHA1: md = EVP_sha1(); break;
		case TUS_CK_SHA256: md = EVP_sha256(); break;
		case TUS_CK_SHA512: md = EVP_sha512(); break;
		case TUS_CK_MD5: md = EVP_md5(); break;
		default: break;
		}
		if (!md || !(r->ck_ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(r->ck_ctx, md, NULL) != 1) {
			al_error_set(AL_ERR_INTERNAL, "cannot compute a %s checksum here", tus_checksum_name(r->ck.alg));
			return 500;
		}
	}
	if ((rc = upload_data_open(r->st, &r->u, 1, &r->fd, &r->direct)))
		return status_of(rc);
	{
		char prefix[UPLOAD_DIRECT_ALIGN];
		size_t plen = 0;
		if ((rc = block_prefix(r, r->u.offset, prefix, &plen)) ||
		    (rc = writer_open(&r->w, r->fd, r->direct, r->u.offset, prefix, plen)))
			return status_of(rc);
	}
	r->pos = r->committed = r->u.offset;
	r->hash = r->committed_hash = r->u.hash;
	r->limit_end = r->u.offset + limit;
	return 0;
}

static struct tus_req *req_new(struct tus *t)
{
	struct tus_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->t = t;
	r->fd = -1;
	r->store_lock = -1;
	r->upload_lock = -1;
	return r;
}

/* ---- PATCH ----------------------------------------------------------------- */

static enum http_stream_decision do_patch(struct tus *t, struct tus_req *r, const struct http_request *req,
					  const char *id, struct http_response *resp, void **ctx)
{
	uint64_t used = 0, files = 0, limit = 0;
	int64_t hdr_offset, hdr_length, cl;
	int rc, status;

	if (!content_type_is_offset(req)) {
		answer_error(resp, 415, "a PATCH must have Content-Type: " OFFSET_CT);
		return HTTP_STREAM_ANSWER;
	}
	if ((rc = upload_store_open(&r->st, r->rt.dir, 0))) {
		answer_error(resp, 404, "no such upload");
		return HTTP_STREAM_ANSWER;
	}
	if (writes_closed(&r->rt, r->st, resp))
		return HTTP_STREAM_ANSWER;
	if ((rc = upload_store_lock(r->st, 0, 0, &r->store_lock))) {
		answer_error(resp, 409, rc == AL_ERR_UNAVAILABLE ? "\"all files uploaded\" is being done for this datasource"
								 : al_error_message());
		return HTTP_STREAM_ANSWER;
	}
	if ((rc = upload_lock(r->st, id, &r->upload_lock))) {
		answer_rc(resp, rc);
		return HTTP_STREAM_ANSWER;
	}
	if ((rc = upload_load(r->st, id, &r->u))) {
		answer_rc(resp, rc);
		return HTTP_STREAM_ANSWER;
	}
	r->have_upload = 1;
	if (!r->u.owner || strcmp(r->u.owner, r->rt.user)) {
		answer_error(resp, 404, "no such upload");
		return HTTP_STREAM_ANSWER;
	}
	if (expired(&r->u)) {
		answer_error(resp, 410, "this upload expired: start it again");
		return HTTP_STREAM_ANSWER;
	}
	if (r->u.kind == UPLOAD_FINAL) {
		answer_error(resp, 403, "a final (concatenated) upload cannot be patched");
		return HTTP_STREAM_ANSWER;
	}
	if ((rc = upload_recover(r->st, &r->u))) {
		answer_rc(resp, rc);
		return HTTP_STREAM_ANSWER;
	}
	hdr_offset = header_int(req, "Upload-Offset");
	hdr_length = header_int(req, "Upload-Length");
	cl = header_int(req, "Content-Length");
	if (hdr_offset == -2 || hdr_length == -2 || cl == -2) {
		answer_error(resp, 400, al_error_message());
		return HTTP_STREAM_ANSWER;
	}
	if (r->u.length < 0 && (rc = upload_store_usage(r->st, &used, &files))) {
		answer_rc(resp, rc);
		return HTTP_STREAM_ANSWER;
	}
	status = tus_patch_decide(&t->lim, r->u.offset, r->u.length, hdr_offset, hdr_length, cl, used, &limit,
				  &r->new_length);
	if (status) {
		answer_error(resp, status, al_error_message());
		return HTTP_STREAM_ANSWER;
	}
	if (r->u.complete) {
		/* Every byte is in (a retry of the last PATCH, say): nothing to write. */
		answer_empty(resp, 204);
		header_u64(resp, "Upload-Offset", r->u.offset);
		return HTTP_STREAM_ANSWER;
	}
	if ((status = start_body(r, req, limit))) {
		answer_error(resp, status, al_error_message());
		return HTTP_STREAM_ANSWER;
	}
	*ctx = r;
	return HTTP_STREAM_BODY;
}

/* ---- creation ------------------------------------------------------------- */

static int disk_has_room(const char *dir, uint64_t need)
{
	struct statvfs sv;
	uint64_t avail;
	if (statvfs(dir, &sv) < 0)
		return 1; /* cannot tell: writing will say */
	avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	if (avail >= need)
		return 1;
	al_error_set(AL_ERR_TOO_LARGE, "the staging disk has %llu bytes free; this upload needs %llu",
		     (unsigned long long)avail, (unsigned long long)need);
	return 0;
}

static int target_from_metadata(const struct tus_meta *meta, char **out)
{
	const struct tus_meta_item *rp = tus_meta_get(meta, "relativePath");
	const struct tus_meta_item *fn = tus_meta_get(meta, "filename");
	/* Some clients send the name as "name" (Uppy does, beside filename). */
	if (!fn)
		fn = tus_meta_get(meta, "name");
	return upload_name_from_metadata(rp ? rp->value : NULL, rp ? rp->value_len : 0, fn ? fn->value : NULL,
					 fn ? fn->value_len : 0, out);
}

/* Concatenation: the final upload from complete partial uploads. */
static void create_final(struct tus *t, struct tus_req *r, const struct tus_concat *cc, char *path,
			 const char *metadata, const char *concat_header, struct http_response *resp)
{
	struct upload *parts = calloc(cc->n, sizeof(*parts));
	int *locks = malloc(cc->n * sizeof(*locks));
	struct upload fin;
	uint64_t total = 0;
	size_t loaded = 0, locked = 0;
	int rc;

	memset(&fin, 0, sizeof(fin));
	if (!parts || !locks) {
		answer_error(resp, 500, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < cc->n; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(cc->ids[i], cc->ids[j])) {
				answer_error(resp, 400, "Upload-Concat: a partial upload is named twice");
				goto out;
			}
	for (size_t i = 0; i < cc->n; i++) {
		if ((rc = upload_lock(r->st, cc->ids[i], &locks[i]))) {
			answer_error(resp, rc == AL_ERR_NOT_FOUND ? 400 : status_of(rc),
				     rc == AL_ERR_NOT_FOUND ? "Upload-Concat: a partial upload does not exist" : al_error_message());
			goto out;
		}
		locked++;
		if ((rc = upload_load(r->st, cc->ids[i], &parts[i]))) {
			answer_error(resp, rc == AL_ERR_NOT_FOUND ? 400 : status_of(rc), al_error_message());
			goto out;
		}
		loaded++;
		if (!parts[i].owner || strcmp(parts[i].owner, r->rt.user) || parts[i].kind != UPLOAD_PARTIAL) {
			answer_error(resp, 400, "Upload-Concat: every part must be a partial upload of yours");
			goto out;
		}
		if ((rc = upload_recover(r->st, &parts[i])) || !parts[i].complete) {
			char msg[200];
			snprintf(msg, sizeof(msg), "Upload-Concat: partial upload %s is not finished (%llu bytes received)",
				 parts[i].id, (unsigned long long)parts[i].offset);
			answer_error(resp, rc ? status_of(rc) : 400, rc ? al_error_message() : msg);
			goto out;
		}
		total += parts[i].offset;
	}
	if (total > t->lim.max_file_bytes) {
		char msg[200];
		snprintf(msg, sizeof(msg), "the concatenated file is %llu bytes; the limit per file is %llu bytes",
			 (unsigned long long)total, (unsigned long long)t->lim.max_file_bytes);
		answer_error(resp, 413, msg);
		goto out;
	}
	if (!disk_has_room(r->rt.dir, total)) {
		answer_error(resp, 507, al_error_message());
		goto out;
	}
	fin.kind = UPLOAD_FINAL;
	fin.owner = util_strdup(r->rt.user);
	fin.path = path;
	path = NULL;
	fin.metadata = util_strdup(metadata);
	fin.concat = util_strdup(concat_header);
	fin.length = (int64_t)total;
	if (!fin.owner || !fin.metadata || !fin.concat) {
		answer_error(resp, 500, "out of memory");
		goto out;
	}
	if ((rc = upload_store_concat(r->st, &fin, parts, cc->n))) {
		answer_rc(resp, rc);
		goto out;
	}
	log_info("upload %s complete: '%s' concatenated from %zu parts, %llu bytes, sha256 %s", fin.id, fin.path, cc->n,
		 (unsigned long long)total, fin.sha256);
	answer_empty(resp, 201);
	header_location(resp, &r->rt, fin.id);
	header_u64(resp, "Upload-Length", total);
out:
	for (size_t i = 0; i < loaded; i++)
		upload_free(&parts[i]);
	for (size_t i = 0; i < locked; i++)
		upload_unlock(locks[i]);
	free(parts);
	free(locks);
	upload_free(&fin);
	free(path);
}

static enum http_stream_decision do_create(struct tus *t, struct tus_req *r, const struct http_request *req,
					   struct http_response *resp, void **ctx)
{
	const char *defer = http_request_header(req, "Upload-Defer-Length");
	const char *meta_h = http_request_header(req, "Upload-Metadata");
	const char *concat_h = http_request_header(req, "Upload-Concat");
	int64_t length = header_int(req, "Upload-Length"), cl = header_int(req, "Content-Length");
	int with_body = content_type_is_offset(req) && cl != 0;
	struct tus_meta meta;
	struct tus_concat cc;
	char *path = NULL;
	uint64_t used = 0, files = 0;
	int create_lock = -1, rc, status;
	enum http_stream_decision d = HTTP_STREAM_ANSWER;

	memset(&meta, 0, sizeof(meta));
	memset(&cc, 0, sizeof(cc));
	if (length == -2 || cl == -2) {
		answer_error(resp, 400, al_error_message());
		return d;
	}
	if (cl > 0 && !content_type_is_offset(req)) {
		answer_error(resp, 415, "a creation request with a body must have Content-Type: " OFFSET_CT);
		return d;
	}
	if ((rc = tus_parse_concat(concat_h, r->rt.base, &cc)) || (rc = tus_parse_metadata(meta_h, &meta))) {
		answer_error(resp, 400, al_error_message());
		goto out;
	}
	if (cc.kind == TUS_CONCAT_FINAL) {
		if (length >= 0 || defer) {
			answer_error(resp, 400, "a final upload takes its length from its parts: send no Upload-Length");
			goto out;
		}
		if (with_body) {
			answer_error(resp, 403, "a final (concatenated) upload takes no body");
			goto out;
		}
	} else if (defer && length >= 0) {
		answer_error(resp, 400, "send Upload-Length or Upload-Defer-Length, not both");
		goto out;
	} else if (defer && strcmp(defer, "1")) {
		answer_error(resp, 400, "Upload-Defer-Length: the only value is 1");
		goto out;
	} else if (!defer && length < 0) {
		answer_error(resp, 400, "Upload-Length: the header is required (or Upload-Defer-Length: 1)");
		goto out;
	}
	if (cc.kind != TUS_CONCAT_PARTIAL && (rc = target_from_metadata(&meta, &path))) {
		answer_error(resp, 400, al_error_message());
		goto out;
	}
	if (length >= 0 && (uint64_t)length > t->lim.max_file_bytes) {
		char msg[200];
		snprintf(msg, sizeof(msg), "the file is %lld bytes; the limit per file is %llu bytes", (long long)length,
			 (unsigned long long)t->lim.max_file_bytes);
		answer_error(resp, 413, msg);
		goto out;
	}
	if ((rc = upload_store_open(&r->st, r->rt.dir, 1))) {
		answer_rc(resp, rc);
		goto out;
	}
	if (writes_closed(&r->rt, r->st, resp))
		goto out;
	if ((rc = upload_store_lock(r->st, 0, 0, &r->store_lock))) {
		answer_error(resp, 409, rc == AL_ERR_UNAVAILABLE ? "\"all files uploaded\" is being done for this datasource"
								 : al_error_message());
		goto out;
	}
	if ((rc = upload_store_lock_create(r->st, &create_lock)) || (rc = upload_store_usage(r->st, &used, &files))) {
		answer_rc(resp, rc);
		goto out;
	}
	if (cc.kind != TUS_CONCAT_PARTIAL && files >= t->lim.max_files) {
		char msg[160];
		snprintf(msg, sizeof(msg), "this datasource has %llu files; at most %llu are allowed",
			 (unsigned long long)files, (unsigned long long)t->lim.max_files);
		answer_error(resp, 413, msg);
		goto out;
	}
	if (cc.kind != TUS_CONCAT_FINAL && length >= 0 && used + (uint64_t)length > t->lim.quota_bytes) {
		char msg[240];
		snprintf(msg, sizeof(msg),
			 "this datasource's quota is %llu bytes and %llu are taken: a file of %lld bytes does not fit",
			 (unsigned long long)t->lim.quota_bytes, (unsigned long long)used, (long long)length);
		answer_error(resp, 413, msg);
		goto out;
	}
	if (path && (rc = upload_store_name_free(r->st, path))) {
		answer_rc(resp, rc);
		goto out;
	}
	if (cc.kind == TUS_CONCAT_FINAL) {
		create_final(t, r, &cc, path, meta_h ? meta_h : "", concat_h, resp);
		path = NULL;
		goto out;
	}
	if (length > 0 && !disk_has_room(r->rt.dir, (uint64_t)length)) {
		answer_error(resp, 507, al_error_message());
		goto out;
	}
	r->u.kind = cc.kind == TUS_CONCAT_PARTIAL ? UPLOAD_PARTIAL : UPLOAD_FILE;
	r->u.owner = util_strdup(r->rt.user);
	r->u.path = path;
	path = NULL;
	r->u.metadata = util_strdup(meta_h ? meta_h : "");
	r->u.concat = NULL;
	r->u.length = length;
	r->u.expires = now_s() + t->lim.expire_seconds;
	r->have_upload = 1;
	if (!r->u.owner || !r->u.metadata) {
		answer_error(resp, 500, "out of memory");
		goto out;
	}
	if ((rc = upload_create(r->st, &r->u))) {
		answer_rc(resp, rc);
		goto out;
	}
	upload_store_unlock(create_lock);
	create_lock = -1;
	log_info("upload %s created by %s: '%s', %lld bytes", r->u.id, r->rt.user,
		 r->u.path ? r->u.path : "(partial)", (long long)r->u.length);
	if (r->u.length == 0 && r->u.kind == UPLOAD_FILE) {
		/* Nothing to send: the empty file is complete at once. */
		if ((rc = upload_place(r->st, &r->u))) {
			answer_rc(resp, rc);
			goto out;
		}
	}
	if (with_body && !r->u.complete) {
		uint64_t limit = 0;
		if ((rc = upload_lock(r->st, r->u.id, &r->upload_lock))) {
			answer_rc(resp, rc);
			goto out;
		}
		if ((rc = upload_store_usage(r->st, &used, &files))) {
			answer_rc(resp, rc);
			goto out;
		}
		status = tus_patch_decide(&t->lim, 0, r->u.length, 0, -1, cl, used, &limit, &r->new_length);
		if (!status)
			status = start_body(r, req, limit);
		if (status) {
			answer_error(resp, status, al_error_message());
			header_location(resp, &r->rt, r->u.id);
			goto out;
		}
		r->creating = 1;
		*ctx = r;
		d = HTTP_STREAM_BODY;
		goto out;
	}
	answer_empty(resp, 201);
	header_location(resp, &r->rt, r->u.id);
	header_expires(resp, &r->u);
	if (with_body)
		header_u64(resp, "Upload-Offset", r->u.offset);
out:
	upload_store_unlock(create_lock);
	tus_meta_free(&meta);
	tus_concat_free(&cc);
	free(path);
	return d;
}

/* ---- HEAD, GET, DELETE ----------------------------------------------------- */

static void do_head(struct tus_route *rt, const char *id, struct http_response *resp)
{
	struct upload_store *st = NULL;
	struct upload u;

	if (load_own(rt, id, &st, &u, resp))
		return;
	if (expired(&u)) {
		answer_error(resp, 410, "this upload expired: start it again");
		goto out;
	}
	if (!u.complete && u.length >= 0 && u.offset == (uint64_t)u.length) {
		/* A crash came between the last byte and the file's placing. */
		int lock = -1;
		if (upload_lock(st, u.id, &lock) == AL_OK && upload_recover(st, &u))
			log_warn("upload %s: %s", u.id, al_error_message());
		upload_unlock(lock);
	}
	answer_empty(resp, 200);
	header_u64(resp, "Upload-Offset", u.offset);
	if (u.length >= 0)
		header_u64(resp, "Upload-Length", (uint64_t)u.length);
	else
		http_response_header(resp, "Upload-Defer-Length", "1");
	if (u.metadata && *u.metadata && http_response_header(resp, "Upload-Metadata", u.metadata))
		log_warn("upload %s: its metadata cannot be sent back as a header", u.id);
	if (u.kind == UPLOAD_PARTIAL)
		http_response_header(resp, "Upload-Concat", "partial");
	else if (u.kind == UPLOAD_FINAL && u.concat)
		http_response_header(resp, "Upload-Concat", u.concat);
	header_expires(resp, &u);
	http_response_header(resp, "Cache-Control", "no-store");
out:
	upload_free(&u);
	upload_store_close(st);
}

static void do_get_one(struct tus_route *rt, const char *id, struct http_response *resp)
{
	struct upload_store *st = NULL;
	struct upload u;
	json_t *o;

	if (load_own(rt, id, &st, &u, resp))
		return;
	o = upload_to_json(&u);
	if (o)
		json_object_set_new(o, "expired", json_boolean(expired(&u)));
	http_response_json(resp, 200, o);
	common_headers(resp);
	upload_free(&u);
	upload_store_close(st);
}

struct list_ctx {
	const char *user;
	const char *base;
	json_t *items;
};

static int list_visit(void *ud, const struct upload *u)
{
	struct list_ctx *lc = ud;
	json_t *o;
	struct buf url;
	if (!u->owner || strcmp(u->owner, lc->user))
		return 0;
	if (!(o = upload_to_json(u)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	buf_init(&url, 8192);
	if (buf_appendf(&url, "%s/%s", lc->base, u->id) || json_object_set_new(o, "url", json_string(url.ptr)) ||
	    json_object_set_new(o, "expired", json_boolean(expired(u))) || json_array_append_new(lc->items, o)) {
		buf_free(&url);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	buf_free(&url);
	return 0;
}

static void do_list(struct tus *t, struct tus_route *rt, struct http_response *resp)
{
	struct upload_store *st = NULL;
	struct list_ctx lc = { rt->user, rt->base, json_array() };
	uint64_t used = 0, files = 0;
	json_t *rec = NULL, *o;
	int rc = AL_OK;

	if (!lc.items) {
		answer_error(resp, 500, "out of memory");
		return;
	}
	if (upload_store_open(&st, rt->dir, 0) == AL_OK) {
		rc = upload_store_foreach(st, list_visit, &lc);
		if (!rc)
			rc = upload_store_usage(st, &used, &files);
		if (!rc && completed_in_round(st, rt))
			upload_store_completion(st, &rec);
	}
	if (rc) {
		json_decref(lc.items);
		answer_rc(resp, rc);
		upload_store_close(st);
		return;
	}
	o = json_pack("{s:o, s:b, s:b, s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I}}", "uploads", lc.items, "writable",
		      rt->writable && !rec, "complete", rec != NULL, "limits", "maxFileBytes",
		      (json_int_t)t->lim.max_file_bytes, "quotaBytes", (json_int_t)t->lim.quota_bytes, "maxFiles",
		      (json_int_t)t->lim.max_files, "expireSeconds", (json_int_t)t->lim.expire_seconds, "usage", "bytes",
		      (json_int_t)used, "files", (json_int_t)files);
	if (o && rec)
		json_object_set(o, "completion", rec);
	if (o && !rt->writable && rt->closed_message)
		json_object_set_new(o, "closedReason", json_string(rt->closed_message));
	http_response_json(resp, 200, o);
	common_headers(resp);
	json_decref(rec);
	upload_store_close(st);
}

static void do_delete(struct tus_route *rt, const char *id, struct http_response *resp)
{
	struct upload_store *st = NULL;
	struct upload u;
	int slock = -1, ulock = -1, rc;

	memset(&u, 0, sizeof(u));
	if ((rc = upload_store_open(&st, rt->dir, 0))) {
		answer_error(resp, 404, "no such upload");
		return;
	}
	if (writes_closed(rt, st, resp))
		goto out;
	if ((rc = upload_store_lock(st, 0, 0, &slock))) {
		answer_error(resp, 409, "\"all files uploaded\" is being done for this datasource");
		goto out;
	}
	if ((rc = upload_lock(st, id, &ulock)) || (rc = upload_load(st, id, &u))) {
		answer_rc(resp, rc);
		goto out;
	}
	if (!u.owner || strcmp(u.owner, rt->user)) {
		answer_error(resp, 404, "no such upload");
		goto out;
	}
	if ((rc = upload_remove(st, &u))) {
		answer_rc(resp, rc);
		goto out;
	}
	log_info("upload %s terminated by %s (%s)", u.id, rt->user, u.path ? u.path : "partial");
	answer_empty(resp, 204);
out:
	upload_free(&u);
	upload_unlock(ulock);
	upload_store_unlock(slock);
	upload_store_close(st);
}

/* ---- all files uploaded ---------------------------------------------------- */

int tus_seal(const char *dir, const char *round, const char *by, json_t **out_record)
{
	struct upload_store *st = NULL;
	struct tus_route rt;
	json_t *rec = NULL;
	int lock = -1, rc;

	if (out_record)
		*out_record = NULL;
	memset(&rt, 0, sizeof(rt));
	rt.round = (char *)round;
	if ((rc = upload_store_open(&st, dir, 1)))
		return rc;
	if ((rc = upload_store_lock(st, 1, 0, &lock))) {
		if (rc == AL_ERR_UNAVAILABLE)
			rc = al_error_set(AL_ERR_CONFLICT, "uploads are being written: try again when they have finished");
		goto out;
	}
	if (completed_in_round(st, &rt)) {
		rc = upload_store_completion(st, &rec);
	} else {
		rc = upload_store_complete(st, round, by, &rec);
		if (!rc)
			log_info("all files uploaded to %s (by %s): %lld files, %lld bytes, digest %s", dir, by ? by : "?",
				 (long long)json_integer_value(json_object_get(json_object_get(rec, "manifest"), "fileCount")),
				 (long long)json_integer_value(json_object_get(json_object_get(rec, "manifest"), "totalBytes")),
				 json_string_value(json_object_get(json_object_get(rec, "manifest"), "digest")));
	}
	if (!rc && out_record) {
		*out_record = rec;
		rec = NULL;
	}
out:
	json_decref(rec);
	upload_store_unlock(lock);
	upload_store_close(st);
	return rc;
}

static void do_complete(struct tus *t, struct tus_route *rt, struct http_response *resp)
{
	json_t *rec = NULL, *body = NULL;
	int rc;

	if (!rt->may_complete) {
		answer_error(resp, 403, "you may not say that all files of this datasource are uploaded");
		return;
	}
	if (!rt->writable) {
		answer_error(resp, rt->closed_status ? rt->closed_status : 409,
			     rt->closed_message ? rt->closed_message : "this datasource takes no uploads now");
		return;
	}
	if ((rc = tus_seal(rt->dir, rt->round, rt->user, &rec))) {
		answer_rc(resp, rc);
		return;
	}
	if (t->host.completed && (rc = t->host.completed(t->host_ud, rt, rec, &body))) {
		answer_rc(resp, rc);
		goto out;
	}
	if (!body)
		body = json_pack("{s:O, s:O?, s:O?}", "manifest", json_object_get(rec, "manifest"), "completedAt",
				 json_object_get(rec, "completedAt"), "completedBy", json_object_get(rec, "completedBy"));
	http_response_json(resp, 200, body);
	common_headers(resp);
out:
	json_decref(rec);
}

static int env_positive(const char *name, uint64_t max, uint64_t *out)
{
	const char *v = getenv(name);
	uint64_t n;
	if (!v || !*v)
		return AL_OK;
	if (tus_parse_uint(name, v, &n) || n == 0 || n > max)
		return al_error_set(AL_ERR_INVALID, "%s=\"%.40s\": expected a positive whole number up to %llu", name, v,
				    (unsigned long long)max);
	*out = n;
	return AL_OK;
}

int tus_limits_from_env(struct tus_limits *lim, int *sweep_seconds)
{
	uint64_t expire = (uint64_t)lim->expire_seconds, sweep = 0;
	int rc;

	if ((rc = env_positive("AIRLOCK_UPLOAD_MAX_FILE_BYTES", (uint64_t)INT64_MAX, &lim->max_file_bytes)) ||
	    (rc = env_positive("AIRLOCK_UPLOAD_QUOTA_BYTES", (uint64_t)INT64_MAX, &lim->quota_bytes)) ||
	    (rc = env_positive("AIRLOCK_UPLOAD_MAX_FILES", 10000000, &lim->max_files)) ||
	    (rc = env_positive("AIRLOCK_UPLOAD_EXPIRE_SECONDS", 365 * 24 * 3600, &expire)) ||
	    (rc = env_positive("AIRLOCK_UPLOAD_SWEEP_SECONDS", 24 * 3600, &sweep)))
		return rc;
	lim->expire_seconds = (int64_t)expire;
	if (!sweep) {
		sweep = expire / 4;
		if (sweep < 1)
			sweep = 1;
		if (sweep > 300)
			sweep = 300;
	}
	if (sweep_seconds)
		*sweep_seconds = (int)sweep;
	return AL_OK;
}

/* ---- dispatch --------------------------------------------------------------- */

static void do_options(struct tus *t, struct http_response *resp)
{
	answer_empty(resp, 204);
	http_response_header(resp, "Tus-Version", TUS_VERSION);
	http_response_header(resp, "Tus-Extension", TUS_EXTENSIONS);
	header_u64(resp, "Tus-Max-Size", t->lim.max_file_bytes);
	http_response_header(resp, "Tus-Checksum-Algorithm", TUS_CHECKSUM_ALGORITHMS);
}

static enum http_stream_decision on_headers(void *userdata, const struct http_request *req,
					    struct http_response *resp, void **ctx)
{
	struct tus *t = userdata;
	struct tus_req *r = req_new(t);
	const char *method = req->method, *rest, *override, *id = NULL;
	enum tus_route_result rr;
	enum http_stream_decision d = HTTP_STREAM_ANSWER;
	int is_collection = 0, is_complete = 0;

	*ctx = NULL;
	if (!r) {
		answer_error(resp, 500, "out of memory");
		return HTTP_STREAM_ANSWER;
	}
	al_error_clear();
	rr = t->host.route(t->host_ud, req, resp, &r->rt);
	if (rr != TUS_ROUTE_OK) {
		route_release(t, &r->rt);
		req_free(r);
		if (rr == TUS_ROUTE_ANSWERED)
			common_headers(resp);
		return rr == TUS_ROUTE_PASS ? HTTP_STREAM_PASS : HTTP_STREAM_ANSWER;
	}
	r->have_route = 1;
	override = http_request_header(req, "X-HTTP-Method-Override");
	if (override && !strcmp(method, "POST"))
		method = override;
	rest = req->path + strlen(r->rt.base);
	if (!strcmp(rest, "/complete"))
		is_complete = 1;
	else if (!*rest || !strcmp(rest, "/"))
		is_collection = 1;
	else if (rest[0] == '/' && tus_is_id(rest + 1))
		id = rest + 1;
	else {
		answer_error(resp, 404, "no such upload");
		goto out;
	}
	if (!strcmp(method, "OPTIONS") && !is_complete) {
		do_options(t, resp);
		goto out;
	}
	if (!r->rt.user || !r->rt.dir) {
		answer_error(resp, 401, "log in first");
		goto out;
	}
	/* Every tus request names its version (GET is not tus). */
	if (strcmp(method, "GET")) {
		const char *v = http_request_header(req, "Tus-Resumable");
		if (!v || strcmp(v, TUS_VERSION)) {
			answer_error(resp, 412, v ? "Tus-Resumable: this server speaks tus 1.0.0 only"
						  : "Tus-Resumable: 1.0.0 is required on every tus request");
			goto out;
		}
	}
	if (is_complete) {
		if (strcmp(method, "POST"))
			answer_error(resp, 405, "\"all files uploaded\" is a POST");
		else
			do_complete(t, &r->rt, resp);
	} else if (is_collection) {
		if (!strcmp(method, "POST"))
			d = do_create(t, r, req, resp, ctx);
		else if (!strcmp(method, "GET"))
			do_list(t, &r->rt, resp);
		else
			answer_error(resp, 405, "the upload collection takes OPTIONS, POST (creation) and GET");
	} else if (!strcmp(method, "HEAD")) {
		do_head(&r->rt, id, resp);
	} else if (!strcmp(method, "PATCH")) {
		d = do_patch(t, r, req, id, resp, ctx);
	} else if (!strcmp(method, "DELETE")) {
		do_delete(&r->rt, id, resp);
	} else if (!strcmp(method, "GET")) {
		do_get_one(&r->rt, id, resp);
	} else {
		answer_error(resp, 405, "an upload takes HEAD, PATCH, DELETE and GET");
	}
out:
	if (d != HTTP_STREAM_BODY)
		req_free(r);
	return d;
}

static const struct http_stream_ops ops = {
	.on_headers = on_headers,
	.on_data = on_data,
	.on_end = on_end,
	.on_close = on_close,
};

const struct http_stream_ops *tus_stream_ops(void)
{
	return &ops;
}

int tus_new(struct tus **out, const struct tus_limits *limits, const struct tus_host *host, void *host_ud)
{
	struct tus *t;
	*out = NULL;
	if (!host || !host->route)
		return al_error_set(AL_ERR_INVALID, "tus: no host given");
	if (!limits->max_file_bytes || !limits->quota_bytes || !limits->max_files || limits->expire_seconds <= 0)
		return al_error_set(AL_ERR_INVALID, "tus: every limit must be positive");
	if (!(t = calloc(1, sizeof(*t))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	t->lim = *limits;
	t->host = *host;
	t->host_ud = host_ud;
	*out = t;
	return AL_OK;
}

void tus_free(struct tus *t)
{
	if (t)
		upload_store_forget_all();
	free(t);
}

/* ---- expiry --------------------------------------------------------------- */

int tus_sweep_dir(struct tus *t, const char *dir, size_t *removed)
{
	struct upload_store *st = NULL;
	int rc;
	(void)t;
	if (removed)
		*removed = 0;
	if ((rc = upload_store_open(&st, dir, 0)))
		return rc == AL_ERR_NOT_FOUND ? AL_OK : rc;
	rc = upload_store_sweep(st, now_s(), removed);
	upload_store_close(st);
	return rc;
}

struct tus_sweeper {
	struct tus *t;
	char *root;
	int each_subdir;
	int period_s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
};

static void sweep_once(struct tus_sweeper *sw)
{
	DIR *d;
	struct dirent *e;

	if (!sw->each_subdir) {
		if (tus_sweep_dir(sw->t, sw->root, NULL))
			log_warn("sweeping uploads of %s: %s", sw->root, al_error_message());
		return;
	}
	if (!(d = opendir(sw->root)))
		return;
	while ((e = readdir(d))) {
		char *p;
		if (e->d_name[0] == '.' || !(p = util_path_join(sw->root, e->d_name)))
			continue;
		if (tus_sweep_dir(sw->t, p, NULL))
			log_warn("sweeping uploads of %s: %s", p, al_error_message());
		free(p);
	}
	closedir(d);
}

static void *sweeper_main(void *arg)
{
	struct tus_sweeper *sw = arg;
	pthread_mutex_lock(&sw->lock);
	while (!sw->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += sw->period_s;
		pthread_cond_timedwait(&sw->cond, &sw->lock, &until);
		if (sw->stop)
			break;
		pthread_mutex_unlock(&sw->lock);
		sweep_once(sw);
		pthread_mutex_lock(&sw->lock);
	}
	pthread_mutex_unlock(&sw->lock);
	return NULL;
}

int tus_sweeper_start(struct tus_sweeper **out, struct tus *t, const char *root, int each_subdir, int period_s)
{
	struct tus_sweeper *sw;
	*out = NULL;
	if (period_s <= 0)
		return al_error_set(AL_ERR_INVALID, "the sweep period must be positive");
	if (!(sw = calloc(1, sizeof(*sw))) || !(sw->root = util_strdup(root))) {
		free(sw);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	sw->t = t;
	sw->each_subdir = each_subdir;
	sw->period_s = period_s;
	pthread_mutex_init(&sw->lock, NULL);
	pthread_cond_init(&sw->cond, NULL);
	if (pthread_create(&sw->thread, NULL, sweeper_main, sw)) {
		pthread_mutex_destroy(&sw->lock);
		pthread_cond_destroy(&sw->cond);
		free(sw->root);
		free(sw);
		return al_error_set(AL_ERR_IO, "cannot start the upload sweeper");
	}
	*out = sw;
	return AL_OK;
}

void tus_sweeper_stop(struct tus_sweeper *sw)
{
	if (!sw)
		return;
	pthread_mutex_lock(&sw->lock);
	sw->stop = 1;
	pthread_cond_broadcast(&sw->cond);
	pthread_mutex_unlock(&sw->lock);
	pthread_join(sw->thread, NULL);
	pthread_mutex_destroy(&sw->lock);
	pthread_cond_destroy(&sw->cond);
	free(sw->root);
	free(sw);
}
