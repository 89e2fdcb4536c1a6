#include "web/http_server.h"

#include "common/error.h"
#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* After a body went over max_body we keep reading (and dropping) at most this
 * much more so the client can be told 413; past it the connection is cut. */
#define DISCARD_LIMIT ((size_t)16 << 20)

#define FALLBACK_500 \
	"{\"error\":{\"code\":\"internal\",\"message\":\"the server could not build a response\",\"status\":500}}"

struct http_server {
	struct MHD_Daemon *daemon;
	http_handler_fn handler;
	void *userdata;
	const struct http_stream_ops *stream; /* NULL: every route is buffered */
	void *stream_userdata;
	size_t max_body;
	unsigned short port;
};

/* Per-request state, from the first (headers-only) callback to completion. */
struct req_state {
	int64_t start_ms;
	struct buf body;
	char *method;      /* copies for the access log */
	char *path;
	char remote[INET6_ADDRSTRLEN];
	int too_large;     /* body went over max_body: drop the rest, answer 413 */
	int answered;      /* a response was queued */
	size_t discarded;
	int status;
	int streaming;     /* a streaming route took the body (HTTP_STREAM_BODY) */
	const struct http_stream_ops *stream; /* set when stream_ctx must be closed */
	void *stream_ctx;
	struct http_response *pending; /* an early answer to a bodiless request */
};

/* ---- request accessors ------------------------------------------------- */

static const char *kv_lookup(const char *const *kv, const char *name, int nocase)
{
	if (!kv)
		return NULL;
	for (size_t i = 0; kv[i] && kv[i + 1]; i += 2) {
		if (nocase ? !strcasecmp(kv[i], name) : !strcmp(kv[i], name))
			return kv[i + 1];
	}
	return NULL;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	if (!req || !name)
		return NULL;
	if (!req->connection)
		return kv_lookup(req->test_headers, name, 1);
	return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *http_request_query(const struct http_request *req, const char *key)
{
	const char *value = NULL;
	size_t len = 0;

	if (!req || !key)
		return NULL;
	if (!req->connection)
		return kv_lookup(req->test_query, key, 0);
	if (MHD_lookup_connection_value_n(req->connection, MHD_GET_ARGUMENT_KIND, key, strlen(key),
					  &value, &len) != MHD_YES)
		return NULL;
	return value ? value : "";
}

/* ---- responses --------------------------------------------------------- */

void http_response_init(struct http_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	buf_init(&resp->body, 0);
	resp->fd = -1;
}

void http_response_free(struct http_response *resp)
{
	if (!resp)
		return;
	free(resp->content_type);
	resp->content_type = NULL;
	buf_free(&resp->body);
	for (size_t i = 0; i < resp->n_headers; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	free(resp->headers);
	resp->headers = NULL;
	resp->n_headers = 0;
	if (resp->fd >= 0)
		close(resp->fd);
	resp->fd = -1;
}

static void clear_body(struct http_response *resp)
{
	buf_reset(&resp->body);
	if (resp->fd >= 0)
		close(resp->fd);
	resp->fd = -1;
	resp->fd_size = 0;
}

static int set_content_type(struct http_response *resp, const char *type)
{
	char *copy = NULL;
	if (type && !(copy = util_strdup(type)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	free(resp->content_type);
	resp->content_type = copy;
	return AL_OK;
}

/* Leaves a fixed 500 in the response; used when building the real one failed. */
static int fallback_500(struct http_response *resp, int rc)
{
	clear_body(resp);
	resp->status = 500;
	free(resp->content_type);
	resp->content_type = NULL;
	if (set_content_type(resp, "application/json") == AL_OK)
		buf_appends(&resp->body, FALLBACK_500);
	return rc;
}

int http_response_bytes(struct http_response *resp, int status, const char *content_type,
			const void *data, size_t len)
{
	int rc;
	clear_body(resp);
	resp->status = status;
	if ((rc = set_content_type(resp, content_type)) < 0)
		return fallback_500(resp, rc);
	if ((rc = buf_append(&resp->body, data ? data : "", data ? len : 0)) < 0)
		return fallback_500(resp, rc);
	return AL_OK;
}

int http_response_json(struct http_response *resp, int status, json_t *body)
{
	char *text;
	int rc;

	if (!body)
		return fallback_500(resp, al_error_set(AL_ERR_INTERNAL, "no JSON body given"));
	text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	json_decref(body);
	if (!text)
		return fallback_500(resp, al_error_set(AL_ERR_NOMEM, "cannot encode the JSON answer"));
	rc = http_response_bytes(resp, status, "application/json", text, strlen(text));
	free(text);
	return rc;
}

int http_response_text(struct http_response *resp, int status, const char *text)
{
	return http_response_bytes(resp, status, "text/plain; charset=utf-8", text,
				   text ? strlen(text) : 0);
}

int http_response_error(struct http_response *resp, int al_error_code, const char *message)
{
	int status = al_error_http_status(al_error_code);
	json_t *o;

	if (!message)
		message = al_error_message();
	o = json_pack("{s:{s:s, s:s, s:i}}", "error", "code", al_error_name(al_error_code), "message",
		      message, "status", status);
	if (!o) /* message not valid UTF-8 */
		o = json_pack("{s:{s:s, s:s, s:i}}", "error", "code", al_error_name(al_error_code),
			      "message", "(message was not valid UTF-8)", "status", status);
	return http_response_json(resp, status, o);
}

int http_response_file(struct http_response *resp, int status, const char *content_type,
		       int fd, uint64_t size)
{
	int rc;
	clear_body(resp);
	resp->status = status;
	if ((rc = set_content_type(resp, content_type)) < 0) {
		if (fd >= 0)
			close(fd);
		return fallback_500(resp, rc);
	}
	resp->fd = fd;
	resp->fd_size = size;
	return AL_OK;
}

static int header_text_ok(const char *s, int is_name)
{
	if (!s || (is_name && !*s))
		return 0;
	for (; *s; s++) {
		if (*s == '\r' || *s == '\n' || (is_name && (*s == ':' || *s == ' ' || *s == '\t')))
			return 0;
	}
	return 1;
}

/* replace: 1 replaces an earlier header of that name (case-insensitive), 0
 * adds one more. */
static int put_header(struct http_response *resp, const char *name, const char *value, int replace)
{
	struct http_header *grown;
	char *n, *v;

	if (!header_text_ok(name, 1) || !header_text_ok(value, 0))
		return al_error_set(AL_ERR_INVALID, "response header '%s' has an invalid name or value",
				    name ? name : "");
	if (!(v = util_strdup(value)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	for (size_t i = 0; replace && i < resp->n_headers; i++) {
		if (!strcasecmp(resp->headers[i].name, name)) {
			free(resp->headers[i].value);
			resp->headers[i].value = v;
			return AL_OK;
		}
	}
	if (!(n = util_strdup(name))) {
		free(v);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	grown = realloc(resp->headers, (resp->n_headers + 1) * sizeof(*grown));
	if (!grown) {
		free(n);
		free(v);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	resp->headers = grown;
	resp->headers[resp->n_headers].name = n;
	resp->headers[resp->n_headers].value = v;
	resp->n_headers++;
	return AL_OK;
}

int http_response_header(struct http_response *resp, const char *name, const char *value)
{
	return put_header(resp, name, value, 1);
}

int http_response_add_header(struct http_response *resp, const char *name, const char *value)
{
	return put_header(resp, name, value, 0);
}

static int has_header(const struct http_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->n_headers; i++)
		if (!strcasecmp(resp->headers[i].name, name))
			return 1;
	return 0;
}

/* ---- the MHD side ------------------------------------------------------ */

static const char *const security_headers[][2] = {
	{ "X-Content-Type-Options", "nosniff" },
	{ "Cache-Control", "no-store" },
	{ "Referrer-Policy", "no-referrer" },
	{ "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'" },
};

/* Turns `resp` into an MHD response and queues it. Consumes resp's body. */
static enum MHD_Result queue_response(struct MHD_Connection *conn, struct req_state *st,
				      struct http_response *resp)
{
	struct MHD_Response *r;
	enum MHD_Result ok;

	if (resp->status < 100 || resp->status > 599) {
		if (resp->status != 0)
			log_error("http: handler set invalid status %d for %s", resp->status, st->path);
		http_response_error(resp, AL_ERR_INTERNAL, "the server produced no response");
	}
	if (resp->fd >= 0) {
		r = MHD_create_response_from_fd64(resp->fd_size, resp->fd);
		if (r)
			resp->fd = -1; /* MHD closes it now */
	} else if (resp->body.len == 0) {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	} else {
		size_t len = resp->body.len;
		char *data = buf_detach(&resp->body);
		r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
		if (!r)
			free(data);
	}
	if (!r) {
		log_error("http: cannot create a response for %s", st->path);
		return MHD_NO;
	}
	ok = MHD_YES;
	if (resp->content_type &&
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type) != MHD_YES)
		ok = MHD_NO;
	for (size_t i = 0; ok == MHD_YES && i < resp->n_headers; i++)
		if (MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value) != MHD_YES)
			ok = MHD_NO;
	for (size_t i = 0; ok == MHD_YES && i < sizeof(security_headers) / sizeof(security_headers[0]); i++)
		if (!has_header(resp, security_headers[i][0]) &&
		    MHD_add_response_header(r, security_headers[i][0], security_headers[i][1]) != MHD_YES)
			ok = MHD_NO;
	if (ok == MHD_YES)
		ok = MHD_queue_response(conn, (unsigned int)resp->status, r);
	MHD_destroy_response(r);
	if (ok == MHD_YES) {
		st->answered = 1;
		st->status = resp->status;
	}
	return ok;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, struct req_state *st, int code,
				   const char *message)
{
	struct http_response resp;
	enum MHD_Result ok;
	http_response_init(&resp);
	http_response_error(&resp, code, message);
	ok = queue_response(conn, st, &resp);
	http_response_free(&resp);
	return ok;
}

static void too_large_message(char *out, size_t n, size_t max)
{
	snprintf(out, n, "the request body is larger than the limit of %zu bytes", max);
}

/* A copy safe for one log line: control and non-ASCII bytes as %XX, bounded. */
static char *log_safe(const char *s, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	struct buf b;
	buf_init(&b, max * 3 + 8);
	for (size_t i = 0; s && s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f) {
			char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
			buf_append(&b, esc, 3);
		} else {
			buf_appendc(&b, (char)c);
		}
	}
	if (s && strlen(s) > max)
		buf_appends(&b, "...");
	return buf_detach(&b);
}

static void fill_remote(struct MHD_Connection *conn, struct req_state *st)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	st->remote[0] = '\0';
	if (!sa)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, st->remote,
			  sizeof(st->remote));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
			  st->remote, sizeof(st->remote));
}

/* Content-Length as a number; -1 when absent, -2 when malformed. */
static long long content_length(struct MHD_Connection *conn)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_CONTENT_LENGTH);
	unsigned long long n;
	char *end;

	if (!v)
		return -1;
	if (*v < '0' || *v > '9')
		return -2;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || *end || n > (unsigned long long)INT64_MAX)
		return -2;
	return (long long)n;
}

static void stream_request(struct http_request *req, struct MHD_Connection *conn, struct req_state *st,
			   const char *method, const char *url)
{
	memset(req, 0, sizeof(*req));
	req->method = method;
	req->path = url;
	req->body = "";
	req->body_len = 0;
	req->remote_addr = st->remote;
	req->connection = conn;
}

/* First call of a request on a server with streaming routes: asks the route.
 * Returns 1 when the request was decided here (*out is the MHD answer), 0 when
 * it goes on as a buffered request. */
static int stream_headers(struct http_server *srv, struct MHD_Connection *conn, struct req_state *st,
			  const char *method, const char *url, enum MHD_Result *out)
{
	struct http_request req;
	struct http_response resp;
	enum http_stream_decision d;
	void *ctx = NULL;

	stream_request(&req, conn, st, method, url);
	http_response_init(&resp);
	d = srv->stream->on_headers(srv->stream_userdata, &req, &resp, &ctx);
	if (ctx) {
		st->stream = srv->stream;
		st->stream_ctx = ctx;
	}
	switch (d) {
	case HTTP_STREAM_PASS:
		http_response_free(&resp);
		return 0;
	case HTTP_STREAM_BODY:
		st->streaming = 1;
		http_response_free(&resp);
		*out = MHD_YES; /* MHD sends 100 Continue if asked, then the body */
		return 1;
	case HTTP_STREAM_ANSWER:
	default: {
		/* A client waiting for 100 Continue never sends the body: answer
		 * now. Otherwise the answer waits for the end of the body (read and
		 * dropped, up to DISCARD_LIMIT): queued before it, MHD would close the
		 * connection with unread bytes, which resets it, and the client
		 * would lose the answer. A bodiless request keeps its connection. */
		const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
		long long cl = content_length(conn);
		if ((!expect || strcasecmp(expect, "100-continue") || cl == 0) && cl <= (long long)DISCARD_LIMIT &&
		    (st->pending = malloc(sizeof(*st->pending)))) {
			*st->pending = resp;
			st->streaming = 1;
			*out = MHD_YES;
			return 1;
		}
		*out = queue_response(conn, st, &resp);
		http_response_free(&resp);
		return 1;
	}
	}
}

/* Sends the answer kept for the end of the body. */
static enum MHD_Result queue_pending(struct MHD_Connection *conn, struct req_state *st)
{
	enum MHD_Result ok = queue_response(conn, st, st->pending);
	http_response_free(st->pending);
	free(st->pending);
	st->pending = NULL;
	return ok;
}

/* Later calls of a streaming request: chunks, then the end. */
static enum MHD_Result stream_body(struct MHD_Connection *conn, struct req_state *st, const char *method,
				   const char *url, const char *upload_data, size_t *upload_data_size)
{
	struct http_request req;
	struct http_response resp;
	enum MHD_Result ok;
	size_t n = *upload_data_size;

	*upload_data_size = 0;
	if (st->answered)
		return MHD_YES; /* answered early: drop what still arrives */
	if (st->pending) {
		/* The answer is decided: drop the body, then send it (see above). */
		if (n && st->discarded + n <= DISCARD_LIMIT) {
			st->discarded += n;
			return MHD_YES;
		}
		return queue_pending(conn, st);
	}
	stream_request(&req, conn, st, method, url);
	http_response_init(&resp);
	if (n) {
		if (!st->stream->on_data(st->stream_ctx, &req, upload_data, n, &resp)) {
			http_response_free(&resp);
			return MHD_YES;
		}
		/* Answered in the middle of the body: after the rest, as above. */
		if ((st->pending = malloc(sizeof(*st->pending)))) {
			*st->pending = resp;
			return MHD_YES;
		}
	} else {
		st->stream->on_end(st->stream_ctx, &req, &resp);
	}
	ok = queue_response(conn, st, &resp);
	http_response_free(&resp);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct req_state *st = *con_cls;
	char msg[128];

	(void)version;
	if (!st) {
		long long cl;

		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		st->start_ms = util_monotonic_ms();
		buf_init(&st->body, srv->max_body);
		st->method = util_strdup(method);
		st->path = util_strdup(url);
		*con_cls = st;
		if (!st->method || !st->path)
			return MHD_NO;
		fill_remote(conn, st);
		if (srv->stream) {
			enum MHD_Result r;
			if (stream_headers(srv, conn, st, method, url, &r))
				return r;
		}
		cl = content_length(conn);
		if (cl == -2)
			return queue_error(conn, st, AL_ERR_INVALID, "the Content-Length header is not a number");
		if (cl >= 0 && (unsigned long long)cl > srv->max_body) {
			st->too_large = 1;
			too_large_message(msg, sizeof(msg), srv->max_body);
			return queue_error(conn, st, AL_ERR_TOO_LARGE, msg);
		}
		return MHD_YES; /* MHD sends 100 Continue if asked, then the body */
	}

	if (st->streaming)
		return stream_body(conn, st, method, url, upload_data, upload_data_size);

	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (st->answered)
			return MHD_YES;
		if (!st->too_large) {
			if (buf_append(&st->body, upload_data, n) == AL_OK)
				return MHD_YES;
			st->too_large = 1;
			buf_free(&st->body);
			/* Try to answer at once; MHD may insist the body is read first. */
			too_large_message(msg, sizeof(msg), srv->max_body);
			if (queue_error(conn, st, AL_ERR_TOO_LARGE, msg) == MHD_YES)
				return MHD_YES;
		}
		st->discarded += n;
		if (st->discarded <= DISCARD_LIMIT)
			return MHD_YES;
		log_warn("http: request body over %zu bytes kept coming; closing the connection",
			 srv->max_body);
		return MHD_NO;
	}

	if (st->answered)
		return MHD_YES;
	if (st->too_large) {
		too_large_message(msg, sizeof(msg), srv->max_body);
		return queue_error(conn, st, AL_ERR_TOO_LARGE, msg);
	}

	{
		struct http_request req;
		struct http_response resp;
		enum MHD_Result ok;

		memset(&req, 0, sizeof(req));
		req.method = method;
		req.path = url;
		req.body = buf_cstr(&st->body);
		req.body_len = st->body.len;
		req.remote_addr = st->remote;
		req.connection = conn;
		http_response_init(&resp);
		srv->handler(srv->userdata, &req, &resp);
		ok = queue_response(conn, st, &resp);
		http_response_free(&resp);
		buf_free(&st->body);
		return ok;
	}
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req_state *st = *con_cls;
	char *m, *p;

	(void)cls;
	(void)conn;
	if (!st)
		return;
	m = log_safe(st->method, 16);
	p = log_safe(st->path, 256);
	log_info("http %s %s %d %lldms%s", m ? m : "?", p ? p : "?", st->answered ? st->status : 0,
		 (long long)(util_monotonic_ms() - st->start_ms),
		 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
	free(m);
	free(p);
	if (st->stream && st->stream_ctx)
		st->stream->on_close(st->stream_ctx);
	if (st->pending) {
		http_response_free(st->pending);
		free(st->pending);
	}
	buf_free(&st->body);
	free(st->method);
	free(st->path);
	free(st);
	*con_cls = NULL;
}

__attribute__((format(printf, 2, 0)))
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_warn("http: %s", line);
}

int http_server_start(struct http_server **out, const char *bind_address, unsigned short port,
		      size_t max_body, http_handler_fn handler, void *userdata)
{
	return http_server_start_stream(out, bind_address, port, max_body, handler, userdata, NULL, NULL);
}

int http_server_start_stream(struct http_server **out, const char *bind_address, unsigned short port,
			     size_t max_body, http_handler_fn handler, void *userdata,
			     const struct http_stream_ops *stream, void *stream_userdata)
{
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;
	const struct sockaddr *sa;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_ERROR_LOG;
	struct http_server *srv;
	const union MHD_DaemonInfo *info;

	*out = NULL;
	if (!handler)
		return al_error_set(AL_ERR_INVALID, "http_server_start: no handler given");
	if (stream && (!stream->on_headers || !stream->on_data || !stream->on_end || !stream->on_close))
		return al_error_set(AL_ERR_INVALID, "http_server_start: every streaming callback must be given");
	if (!bind_address || !strcmp(bind_address, "localhost"))
		bind_address = "127.0.0.1";
	memset(&a4, 0, sizeof(a4));
	memset(&a6, 0, sizeof(a6));
	if (strchr(bind_address, ':')) {
		a6.sin6_family = AF_INET6;
		a6.sin6_port = htons(port);
		if (inet_pton(AF_INET6, bind_address, &a6.sin6_addr) != 1)
			return al_error_set(AL_ERR_INVALID,
					    "bind address '%s' is not an IPv6 address such as ::1 or ::",
					    bind_address);
		/* "::" listens on every interface: accept IPv4 too, as people expect. */
		flags |= IN6_IS_ADDR_UNSPECIFIED(&a6.sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
		sa = (const struct sockaddr *)&a6;
	} else {
		a4.sin_family = AF_INET;
		a4.sin_port = htons(port);
		if (inet_pton(AF_INET, bind_address, &a4.sin_addr) != 1)
			return al_error_set(AL_ERR_INVALID,
					    "bind address '%s' is not an IPv4 address such as 127.0.0.1 or 0.0.0.0",
					    bind_address);
		sa = (const struct sockaddr *)&a4;
	}

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	srv->handler = handler;
	srv->userdata = userdata;
	srv->max_body = max_body ? max_body : HTTP_SERVER_DEFAULT_MAX_BODY;
	srv->stream = stream;
	srv->stream_userdata = stream_userdata;
	errno = 0;
	srv->daemon = MHD_start_daemon(flags, port, NULL, NULL, on_request, srv,
				       MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
				       MHD_OPTION_SOCK_ADDR, sa,
				       MHD_OPTION_CONNECTION_MEMORY_LIMIT,
				       stream ? HTTP_SERVER_STREAM_CONNECTION_MEMORY : (size_t)32 << 10,
				       MHD_OPTION_CONNECTION_LIMIT, (unsigned int)HTTP_SERVER_MAX_CONNECTIONS,
				       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)HTTP_SERVER_CONNECTION_TIMEOUT_S,
				       MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				       MHD_OPTION_END);
	if (!srv->daemon) {
		int e = errno;
		free(srv);
		return al_error_set(AL_ERR_IO,
				    "cannot listen on %s port %u%s%s: is another airlock (or program) using it?",
				    bind_address, (unsigned)port, e ? ": " : "", e ? strerror(e) : "");
	}
	info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info && info->port ? info->port : port;
	*out = srv;
	return AL_OK;
}

unsigned short http_server_port(const struct http_server *srv)
{
	return srv ? srv->port : 0;
}

void http_server_stop(struct http_server *srv)
{
	if (!srv)
		return;
	MHD_stop_daemon(srv->daemon);
	free(srv);
}
