#include "web/upload_auth.h"

#include "common/error.h"
#include "web/frontend.h"
#include "web/session.h"

#include <sodium.h>
#include <string.h>

/* GET and HEAD read; everything else may change something. A POST with
 * X-HTTP-Method-Override is a POST here whatever it overrides to. */
static int changes_state(const struct http_request *req)
{
	return strcmp(req->method, "GET") && strcmp(req->method, "HEAD");
}

/* Constant time in the token's content (its length is public: 43). */
static int token_matches(const char want[SESSION_CSRF_LEN + 1], const char *got)
{
	return got && strlen(got) == SESSION_CSRF_LEN && sodium_memcmp(want, got, SESSION_CSRF_LEN) == 0;
}

int upload_auth_session(void *ud, const struct http_request *req, json_t **out_user)
{
	struct frontend_ctx *f = ud;
	char csrf[SESSION_CSRF_LEN + 1];
	json_t *user = NULL;
	int rc;

	*out_user = NULL;
	if (http_request_header(req, "Authorization"))
		return al_error_set(AL_ERR_NOT_FOUND, "a bearer token, not a session");
	if ((rc = frontend_session_user(f, req, &user, csrf)))
		return rc;
	if (changes_state(req) && !frontend_same_origin(f, req)) {
		sodium_memzero(csrf, sizeof(csrf));
		json_decref(user);
		return al_error_set(AL_ERR_FORBIDDEN, "this request came from another site (Origin): uploads are "
						      "sent from the airlock's own upload page");
	}
	if (changes_state(req) && !token_matches(csrf, http_request_header(req, UPLOAD_AUTH_CSRF_HEADER))) {
		sodium_memzero(csrf, sizeof(csrf));
		json_decref(user);
		return al_error_set(AL_ERR_FORBIDDEN, "the request did not carry this session's CSRF token (header "
						      UPLOAD_AUTH_CSRF_HEADER "): reload the page and try again");
	}
	sodium_memzero(csrf, sizeof(csrf));
	*out_user = user;
	return AL_OK;
}
