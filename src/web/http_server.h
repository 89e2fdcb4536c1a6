/*
 * http_server.h - a small HTTP/1.1 server over libmicrohttpd for the API.
 *
 * What it promises:
 *  - One handler function sees every request, once, after the whole body has
 *    arrived. Bodies are held in memory and bounded by `max_body`: a request
 *    whose Content-Length is over the limit is answered 413 before any of the
 *    body is read, and a chunked body that grows past it is answered 413
 *    without calling the handler.
 *  - Thread per connection: the handler runs on the connection's own thread,
 *    so it may block (a long-poll watch, a slow database) without stalling
 *    other requests. Several handlers run at the same time: the handler and
 *    its userdata must be thread-safe. At most HTTP_SERVER_MAX_CONNECTIONS
 *    connections are served at once; an idle connection is closed after 60 s.
 *  - Every response carries X-Content-Type-Options: nosniff,
 *    Cache-Control: no-store, Referrer-Policy: no-referrer and
 *    Content-Security-Policy: default-src 'none'; frame-ancestors 'none'
 *    unless the handler set that header itself (an HTML page sets its own CSP).
 *  - One access-log line per request via log_info: method, path (without the
 *    query string), status, duration in ms. Never headers (Authorization) or
 *    bodies. Paths are logged, so never put a secret into a URL path.
 *
 * Ownership: a struct http_request and everything it points to belong to the
 * server and are valid only during the handler call. The handler fills the
 * struct http_response it is given; the server frees it afterwards.
 *
 * Streaming routes (http_server_start_stream): a route that must not hold a
 * body in memory (an upload of gigabytes) sees the request chunk by chunk,
 * as libmicrohttpd reads it, instead of buffered; see struct http_stream_ops.
 * Every other route keeps the buffered handler above, unchanged.
 */
#ifndef AL_WEB_HTTP_SERVER_H
#define AL_WEB_HTTP_SERVER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define HTTP_SERVER_MAX_CONNECTIONS 256
#define HTTP_SERVER_CONNECTION_TIMEOUT_S 60
/* max_body used when http_server_start() is given 0. */
#define HTTP_SERVER_DEFAULT_MAX_BODY ((size_t)1 << 20)

struct MHD_Connection;

struct http_request {
	const char *method;      /* "GET", "POST", ... as sent */
	const char *path;        /* percent-decoded URL path, no query string */
	const char *body;        /* NUL-terminated copy of the body ("" when none);
				  * may itself contain NULs: use body_len */
	size_t body_len;
	const char *remote_addr; /* client IP address as text, "" if unknown */
	/* Opaque: used by http_request_header/_query. */
	struct MHD_Connection *connection;
	/* For unit tests of handlers without a socket: when `connection` is
	 * NULL, headers and query are looked up in these NULL-terminated
	 * {name, value, name, value, ..., NULL} lists (either may be NULL). */
	const char *const *test_headers;
	const char *const *test_query;
};

/* The value of request header `name` (case-insensitive), or NULL if absent.
 * Valid during the handler call only. */
const char *http_request_header(const struct http_request *req, const char *name);

/* The percent-decoded value of query parameter `key` (case-sensitive), NULL if
 * absent, "" for a key given without '=' ("?watch"). When a key is repeated,
 * the first value. Valid during the handler call only. */
const char *http_request_query(const struct http_request *req, const char *key);

struct http_header {
	char *name;
	char *value;
};

struct http_response {
	int status;              /* 0 until the handler sets one; 0 answers 500 */
	char *content_type;      /* owned; NULL sends no Content-Type */
	struct buf body;         /* owned; bounded by BUF_DEFAULT_MAX (64 MiB) */
	struct http_header *headers; /* owned extra headers */
	size_t n_headers;
	int fd;                  /* owned file body (http_response_file), -1 when none */
	uint64_t fd_size;
};

/* Handlers receive an initialised response. Tests of handlers may use these
 * two directly. */
void http_response_init(struct http_response *resp);
void http_response_free(struct http_response *resp);

/* Each setter replaces the status, content type and body set before; extra
 * headers are kept. They return AL_OK or AL_ERR_NOMEM / AL_ERR_TOO_LARGE, and
 * on failure leave a 500 error in the response, so a handler may ignore the
 * return value and simply return. */

/* JSON body (application/json). `body` is stolen (decref'd), even on error;
 * NULL answers 500. */
int http_response_json(struct http_response *resp, int status, json_t *body);
/* text/plain; charset=utf-8. */
int http_response_text(struct http_response *resp, int status, const char *text);
/* Any bytes with the given content type (e.g. "text/html; charset=utf-8"). */
int http_response_bytes(struct http_response *resp, int status, const char *content_type,
			const void *data, size_t len);
/* {"error": {"code": al_error_name(code), "message": message, "status": N}}
 * with N = al_error_http_status(code). `message` is sent to the client as is:
 * never put a secret in it. NULL message uses al_error_message(). */
int http_response_error(struct http_response *resp, int al_error_code, const char *message);
/* Streams `size` bytes of the open file `fd` from its offset 0 (downloads).
 * Takes ownership of fd (closed by the server, also on error). */
int http_response_file(struct http_response *resp, int status, const char *content_type,
		       int fd, uint64_t size);
/* Adds (or replaces, case-insensitively) an extra header. Names and values
 * with CR or LF are refused (AL_ERR_INVALID): no header injection. */
int http_response_header(struct http_response *resp, const char *name, const char *value);
/* Adds one more header of that name, keeping those set before: for headers
 * that may repeat, such as Set-Cookie (one cookie per header, RFC 6265 3).
 * Same checks as http_response_header. A later http_response_header of the
 * same name replaces only the first of them. */
int http_response_add_header(struct http_response *resp, const char *name, const char *value);

typedef void (*http_handler_fn)(void *userdata, const struct http_request *req,
				struct http_response *resp);

struct http_server;

/* Starts listening and serving on background threads.
 * bind_address: a numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "0.0.0.0",
 *   "::" which also accepts IPv4), or "localhost"; NULL means 127.0.0.1.
 * port: 0 picks a free port (see http_server_port).
 * max_body: largest request body accepted in bytes; 0 means
 *   HTTP_SERVER_DEFAULT_MAX_BODY.
 * handler/userdata: called concurrently from connection threads (see top).
 * On success *out owns the server; stop it with http_server_stop. */
int http_server_start(struct http_server **out, const char *bind_address, unsigned short port,
		      size_t max_body, http_handler_fn handler, void *userdata);

/*
 * Streaming routes. For every request the server first calls on_headers with
 * the request line and headers only (req->body is "", body_len 0), before
 * any of the body is read, and the route decides at once:
 *
 *   HTTP_STREAM_PASS    not a streaming route: the request goes on as a
 *                       buffered one (max_body applies, then the handler).
 *   HTTP_STREAM_ANSWER  on_headers filled `resp` (an error such as 401, 409,
 *                       412 or 413, or a complete answer to a bodiless
 *                       request). No byte of the body reaches the route. A
 *                       client that asked for 100 Continue gets the answer
 *                       at once and sends no body; otherwise the body is
 *                       read and dropped, up to 16 MiB, and the answer sent
 *                       after it (answered while the client is still
 *                       sending, the connection would be reset and the
 *                       client lose the answer); a larger body is not read
 *                       and the connection is closed after the answer.
 *   HTTP_STREAM_BODY    the route takes the body: on_data is called with
 *                       each chunk in order (sizes are arbitrary, up to the
 *                       connection's buffer), then on_end once the whole body
 *                       has arrived. max_body does not apply: the route
 *                       enforces its own limits.
 *
 * on_data returns 0 to go on, or 1 after filling `resp` to answer instead
 * (no more calls; the rest of the body is dropped as for HTTP_STREAM_ANSWER).
 * on_end fills `resp`.
 *
 * on_headers may set *ctx, its state for this one request. Whenever *ctx is
 * not NULL at the end of the request, on_close(ctx) is called exactly once,
 * on the connection's thread, after everything else and whatever happened
 * (answered, finished, or the client went away in the middle of the body:
 * then on_end was never called). on_close owns and frees ctx; it may block
 * (to make what was received durable, say).
 *
 * Every call for one request happens on that connection's thread, one at a
 * time; calls for different requests run concurrently, so the ops' userdata
 * must be thread-safe. `req` is valid only during each call (headers can be
 * read in every call, not only the first); `data` only during on_data.
 * Responses follow the buffered handler's rules (security headers, access
 * log). Keep blocking calls short in on_headers: the client may be waiting
 * for 100 Continue.
 */
enum http_stream_decision {
	HTTP_STREAM_PASS = 0,
	HTTP_STREAM_ANSWER,
	HTTP_STREAM_BODY,
};

struct http_stream_ops {
	enum http_stream_decision (*on_headers)(void *userdata, const struct http_request *req,
						struct http_response *resp, void **ctx);
	int (*on_data)(void *ctx, const struct http_request *req, const char *data, size_t len,
		       struct http_response *resp);
	void (*on_end)(void *ctx, const struct http_request *req, struct http_response *resp);
	void (*on_close)(void *ctx);
};

/* Per-connection memory of a server with streaming routes: libmicrohttpd
 * reads the body into (part of) it, so it sets how many reads, select()s and
 * on_data calls a large upload costs: 4 MiB reads up to about 2 MiB at a time,
 * twice the throughput of 256 KiB on loopback (bench/upload.sh). Pages are
 * touched only as a connection needs them. Other servers keep
 * libmicrohttpd's default (32 KiB). */
#define HTTP_SERVER_STREAM_CONNECTION_MEMORY ((size_t)4 << 20)

/* http_server_start with streaming routes: `stream` (borrowed; must outlive
 * the server) with its own userdata. stream NULL is http_server_start. */
int http_server_start_stream(struct http_server **out, const char *bind_address, unsigned short port,
			     size_t max_body, http_handler_fn handler, void *userdata,
			     const struct http_stream_ops *stream, void *stream_userdata);

/* The port actually bound (useful after port 0). */
unsigned short http_server_port(const struct http_server *srv);

/* Stops accepting, waits for every running handler to return (so make
 * blocking handlers time out or wake them first), and frees the server.
 * NULL is a no-op. Do not call it from a handler. */
void http_server_stop(struct http_server *srv);

#endif
