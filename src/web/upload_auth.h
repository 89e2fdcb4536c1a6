/*
 * upload_auth.h - the web session on the uploader's routes: the
 * upload_embed `authenticate` hook (uploader/upload_embed.h) that lets the
 * browser upload widget use the session cookie of the pages.
 *
 * What it promises:
 *  - A request with an Authorization header is left to the bearer token
 *    (AL_ERR_NOT_FOUND): the hook never stands in for one.
 *  - A request without a session cookie is left to the bearer token too
 *    (which then answers 401 for want of credentials).
 *  - A session cookie is resolved as the pages resolve it
 *    (frontend_session_user); an ended session is AL_ERR_UNAUTHORIZED (401).
 *  - Every request with a session cookie other than GET and HEAD (so POST,
 *    PATCH, DELETE, and any POST carrying X-HTTP-Method-Override) must carry
 *    the session's CSRF token in the X-CSRF-Token header, compared in
 *    constant time; else AL_ERR_FORBIDDEN (403) and the request does
 *    nothing. A cross-site page cannot read the token, and cannot send the
 *    header without a CORS preflight, which is never granted. Such a
 *    request must also come from our own origin as the forms' check sees it
 *    (frontend_same_origin: Origin, else Referer), else 403 too.
 *  - Neither the cookie nor the token is ever logged or put in a message.
 *
 * Ownership: ud is the struct frontend_ctx of the server, borrowed.
 */
#ifndef AL_WEB_UPLOAD_AUTH_H
#define AL_WEB_UPLOAD_AUTH_H

#include <jansson.h>

#include "web/http_server.h"

#define UPLOAD_AUTH_CSRF_HEADER "X-CSRF-Token"

/* An upload_embed_auth_fn; ud is a struct frontend_ctx. */
int upload_auth_session(void *ud, const struct http_request *req, json_t **out_user);

#endif
