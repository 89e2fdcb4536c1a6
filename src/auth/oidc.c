#include "auth/oidc.h"
#include "auth/accounts.h"
#include "auth/jwt.h"
#include "common/error.h"
#include "common/log.h"
#include "common/util.h"
#include "net/curl_dl.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Airlock's roles, in the order accounts use. */
static const char *const role_order[] = { "researcher", "data-engineer", "approver", "admin" };
#define N_ROLES (sizeof(role_order) / sizeof(role_order[0]))

struct oidc {
	/* Settings: fixed after oidc_open. */
	char *issuer;
	char *client_id;
	char *client_secret;        /* NULL without clientSecretFile; wiped on close */
	char **algorithms;          /* NULL-terminated */
	char *groups_claim;
	char *ws_prefix;
	json_t *role_mapping;
	int leeway;
	char *ca_file;
	oidc_http_fn http;
	void *http_ud;
	int64_t refetch_ms;

	/* One network fetch (discovery or JWKS) at a time; taken before mu. */
	pthread_mutex_t fetch_mu;
	/* Guards everything below. */
	pthread_mutex_t mu;
	int discovered;             /* once set, the endpoint strings never change */
	char *jwks_uri;
	char *authorization_endpoint;
	char *token_endpoint;
	char *end_session_endpoint; /* NULL if the provider has none */
	int64_t discovery_attempt_ms;
	struct jwt_keyset *keys;
	unsigned keys_gen;          /* bumped on every successful JWKS fetch */
	int64_t keys_fetched_ms;
	int64_t keys_attempt_ms;
	int have_keys_attempt;
	int have_discovery_attempt;
};

static void wipe_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

/* ---- small helpers ----------------------------------------------------- */

int oidc_url_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = AL_OK;
	for (const unsigned char *p = (const unsigned char *)s; *p && rc == AL_OK; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '.' || *p == '_' || *p == '~') {
			rc = buf_appendc(b, (char)*p);
		} else {
			char esc[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			rc = buf_append(b, esc, 3);
		}
	}
	return rc;
}

/* "&name=value" (or without '&' at the start of a form). */
static int add_param(struct buf *b, const char *name, const char *value)
{
	int rc;
	if (b->len && b->ptr[b->len - 1] != '?' && b->ptr[b->len - 1] != '&' && (rc = buf_appendc(b, '&')))
		return rc;
	if ((rc = buf_appends(b, name)) || (rc = buf_appendc(b, '=')))
		return rc;
	return oidc_url_encode(b, value);
}

/* https://, or http:// to a loopback host (a Keycloak on this machine). */
static int url_allowed(const char *url)
{
	const char *host;
	size_t n;
	if (!url)
		return 0;
	if (!strncmp(url, "https://", 8))
		return url[8] != '\0';
	if (strncmp(url, "http://", 7))
		return 0;
	host = url + 7;
	n = strcspn(host, "/?#");
	if (memchr(host, '@', n)) /* user info could disguise the host */
		return 0;
	if (n >= 5 && !strncmp(host, "[::1]", 5) && (n == 5 || host[5] == ':'))
		return 1;
	{
		size_t hl = strcspn(host, ":/?#");
		if (hl == 9 && !strncasecmp(host, "localhost", 9))
			return 1;
		if (hl >= 9 && !strncmp(host, "127.", 4)) {
			for (size_t i = 4; i < hl; i++)
				if (!((host[i] >= '0' && host[i] <= '9') || host[i] == '.'))
					return 0;
			return 1;
		}
	}
	return 0;
}

/* ---- HTTP through libcurl ------------------------------------------------ */

struct sink {
	struct buf *b;
	int too_large;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sink *s = userp;
	size_t n = size * nmemb;
	if (buf_append(s->b, data, n) < 0) {
		s->too_large = 1;
		return 0;
	}
	return n;
}

static int curl_http(void *ud, const char *url, const char *authorization, const char *form, long *status,
		     struct buf *body)
{
	struct oidc *o = ud;
	const struct curl_dl *cu = curl_dl();
	struct curl_slist *headers = NULL, *h;
	struct buf auth;
	struct sink sink = { body, 0 };
	char errbuf[CURL_ERROR_SIZE];
	CURL *curl = NULL;
	CURLcode cc;
	int rc = AL_OK;

	*status = 0;
	buf_init(&auth, 64 * 1024);
	if (!cu)
		return AL_ERR_UNAVAILABLE;
	if (!(curl = cu->easy_init()))
		return al_error_set(AL_ERR_NOMEM, "cannot create a libcurl handle");
	if (!(h = cu->slist_append(headers, "Accept: application/json")))
		goto nomem;
	headers = h;
	if (form) {
		if (!(h = cu->slist_append(headers, "Content-Type: application/x-www-form-urlencoded")))
			goto nomem;
		headers = h;
	}
	if (authorization) {
		if (buf_appendf(&auth, "Authorization: %s", authorization) ||
		    !(h = cu->slist_append(headers, auth.ptr)))
			goto nomem;
		headers = h;
	}
	errbuf[0] = '\0';
	cu->easy_setopt(curl, CURLOPT_URL, url);
	cu->easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	cu->easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	cu->easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	cu->easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	cu->easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)OIDC_HTTP_TIMEOUT_MS);
	cu->easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	cu->easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	cu->easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	cu->easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	cu->easy_setopt(curl, CURLOPT_USERAGENT, "airlock/" AIRLOCK_VERSION);
	if (o && o->ca_file)
		cu->easy_setopt(curl, CURLOPT_CAINFO, o->ca_file);
	if (form) {
		cu->easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(form));
		cu->easy_setopt(curl, CURLOPT_POSTFIELDS, form);
	} else {
		cu->easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	}
	cc = cu->easy_perform(curl);
	if (cc != CURLE_OK) {
		if (sink.too_large)
			rc = al_error_set(AL_ERR_UNAVAILABLE, "the identity provider's answer from %s is larger than %d bytes",
					  url, OIDC_MAX_RESPONSE);
		else
			rc = al_error_set(AL_ERR_UNAVAILABLE, "cannot reach the identity provider at %s: %s", url,
					  errbuf[0] ? errbuf : cu->easy_strerror(cc));
	} else {
		cu->easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
	}
	goto out;
nomem:
	rc = al_error_set(AL_ERR_NOMEM, "out of memory");
out:
	if (auth.ptr)
		sodium_memzero(auth.ptr, auth.len);
	buf_free(&auth);
	cu->slist_free_all(headers);
	cu->easy_cleanup(curl);
	return rc;
}

/* GET or POST, expecting JSON. *out_json is NULL if the body is not JSON.
 * The body buffer is wiped: token answers carry secrets. */
static int fetch_json(struct oidc *o, const char *url, const char *authorization, const char *form, long *status,
		      json_t **out_json)
{
	struct buf body;
	json_error_t jerr;
	int rc;

	*out_json = NULL;
	buf_init(&body, OIDC_MAX_RESPONSE);
	rc = o->http(o->http_ud, url, authorization, form, status, &body);
	if (rc == AL_OK && body.len)
		*out_json = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &jerr);
	if (body.ptr)
		sodium_memzero(body.ptr, body.len);
	buf_free(&body);
	return rc;
}

/* ---- open / close ------------------------------------------------------ */

int oidc_open(struct oidc **out, const struct config_oidc *cfg)
{
	struct oidc *o;
	size_t i, n;
	json_t *a;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->issuer || !cfg->client_id)
		return al_error_set(AL_ERR_INVALID, "oidc: issuer and clientId are required");
	if (!url_allowed(cfg->issuer))
		return al_error_set(AL_ERR_INVALID, "oidc.issuer: %s must be https:// (http:// only for a provider on "
						    "this machine, e.g. http://127.0.0.1:8180/realms/airlock)", cfg->issuer);
	if (!(o = calloc(1, sizeof(*o))))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	pthread_mutex_init(&o->mu, NULL);
	pthread_mutex_init(&o->fetch_mu, NULL);
	o->http = curl_http;
	o->http_ud = o;
	o->refetch_ms = OIDC_JWKS_REFETCH_MS;
	o->leeway = cfg->leeway_seconds;
	n = json_array_size(cfg->algorithms);
	o->issuer = util_strdup(cfg->issuer);
	o->client_id = util_strdup(cfg->client_id);
	o->groups_claim = util_strdup(cfg->groups_claim ? cfg->groups_claim : "groups");
	o->ws_prefix = util_strdup(cfg->workspace_group_prefix ? cfg->workspace_group_prefix : "/jupyter-workspaces/");
	o->role_mapping = cfg->role_mapping ? json_deep_copy(cfg->role_mapping) : json_object();
	o->algorithms = calloc(n + 1, sizeof(char *));
	if (!o->issuer || !o->client_id || !o->groups_claim || !o->ws_prefix || !o->role_mapping || !o->algorithms ||
	    (cfg->ca_file && !(o->ca_file = util_strdup(cfg->ca_file)))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto fail;
	}
	json_array_foreach(cfg->algorithms, i, a) {
		if (!jwt_alg_supported(json_string_value(a))) {
			rc = al_error_set(AL_ERR_INVALID, "oidc.algorithms[%zu]: not an accepted algorithm", i);
			goto fail;
		}
		if (!(o->algorithms[i] = util_strdup(json_string_value(a)))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto fail;
		}
	}
	if (cfg->client_secret_file) {
		char *text = NULL;
		size_t len = 0;
		if ((rc = util_read_file(cfg->client_secret_file, 4096, &text, &len))) {
			al_error_wrap(rc, "oidc.clientSecretFile");
			goto fail;
		}
		while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
			text[--len] = '\0';
		if (!len) {
			wipe_free(text);
			rc = al_error_set(AL_ERR_INVALID, "oidc.clientSecretFile: %s is empty", cfg->client_secret_file);
			goto fail;
		}
		o->client_secret = text;
	}
	*out = o;
	return AL_OK;
fail:
	oidc_close(o);
	return rc;
}

void oidc_close(struct oidc *o)
{
	if (!o)
		return;
	free(o->issuer);
	free(o->client_id);
	wipe_free(o->client_secret);
	for (size_t i = 0; o->algorithms && o->algorithms[i]; i++)
		free(o->algorithms[i]);
	free(o->algorithms);
	free(o->groups_claim);
	free(o->ws_prefix);
	json_decref(o->role_mapping);
	free(o->ca_file);
	free(o->jwks_uri);
	free(o->authorization_endpoint);
	free(o->token_endpoint);
	free(o->end_session_endpoint);
	jwt_keyset_unref(o->keys);
	pthread_mutex_destroy(&o->mu);
	pthread_mutex_destroy(&o->fetch_mu);
	free(o);
}

void oidc_set_http(struct oidc *o, oidc_http_fn fn, void *ud)
{
	o->http = fn ? fn : curl_http;
	o->http_ud = fn ? ud : o;
}

void oidc_set_refetch_ms(struct oidc *o, int64_t refetch_ms)
{
	o->refetch_ms = refetch_ms > 0 ? refetch_ms : OIDC_JWKS_REFETCH_MS;
}

const char *oidc_issuer(const struct oidc *o)
{
	return o->issuer;
}

const char *oidc_client_id(const struct oidc *o)
{
	return o->client_id;
}

int oidc_is_jwt(const char *token)
{
	return jwt_looks_like(token);
}

/* ---- discovery and keys ------------------------------------------------ */

static int endpoint(const json_t *doc, const char *name, int required, char **out)
{
	const char *v = json_string_value(json_object_get(doc, name));
	*out = NULL;
	if (!v)
		return required ? al_error_set(AL_ERR_UNAVAILABLE, "the identity provider's discovery document has no %s",
					       name)
				: AL_OK;
	if (!url_allowed(v))
		return al_error_set(AL_ERR_UNAVAILABLE, "the identity provider's %s (%s) is not https://", name, v);
	if (!(*out = util_strdup(v)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

/* With fetch_mu held. */
static int discover_locked(struct oidc *o)
{
	char *jwks = NULL, *authz = NULL, *token = NULL, *end = NULL;
	json_t *doc = NULL;
	struct buf url;
	long status = 0;
	int64_t now = util_monotonic_ms();
	int rc;

	pthread_mutex_lock(&o->mu);
	if (o->discovered) {
		pthread_mutex_unlock(&o->mu);
		return AL_OK;
	}
	if (o->have_discovery_attempt && now - o->discovery_attempt_ms < OIDC_RETRY_MS) {
		pthread_mutex_unlock(&o->mu);
		return al_error_set(AL_ERR_UNAVAILABLE, "the identity provider %s could not be reached a moment ago; "
							"try again in a few seconds", o->issuer);
	}
	o->have_discovery_attempt = 1;
	o->discovery_attempt_ms = now;
	pthread_mutex_unlock(&o->mu);

	buf_init(&url, 8192);
	if ((rc = buf_appendf(&url, "%s%s.well-known/openid-configuration", o->issuer,
			      o->issuer[strlen(o->issuer) - 1] == '/' ? "" : "/")))
		goto out;
	if ((rc = fetch_json(o, url.ptr, NULL, NULL, &status, &doc)))
		goto out;
	if (status != 200 || !json_is_object(doc)) {
		rc = al_error_set(AL_ERR_UNAVAILABLE, "the identity provider answered %ld to %s: is oidc.issuer right?",
				  status, url.ptr);
		goto out;
	}
	if (!json_string_value(json_object_get(doc, "issuer")) ||
	    strcmp(json_string_value(json_object_get(doc, "issuer")), o->issuer)) {
		rc = al_error_set(AL_ERR_UNAVAILABLE, "the identity provider at %s calls itself \"%s\", not \"%s\": set "
						      "oidc.issuer to exactly its issuer", url.ptr,
				  json_string_value(json_object_get(doc, "issuer")) ?
				  json_string_value(json_object_get(doc, "issuer")) : "", o->issuer);
		goto out;
	}
	if ((rc = endpoint(doc, "jwks_uri", 1, &jwks)) || (rc = endpoint(doc, "authorization_endpoint", 1, &authz)) ||
	    (rc = endpoint(doc, "token_endpoint", 1, &token)) || (rc = endpoint(doc, "end_session_endpoint", 0, &end)))
		goto out;
	pthread_mutex_lock(&o->mu);
	o->jwks_uri = jwks;
	o->authorization_endpoint = authz;
	o->token_endpoint = token;
	o->end_session_endpoint = end;
	o->discovered = 1;
	pthread_mutex_unlock(&o->mu);
	jwks = authz = token = end = NULL;
	log_info("oidc: discovered %s", o->issuer);
out:
	free(jwks);
	free(authz);
	free(token);
	free(end);
	json_decref(doc);
	buf_free(&url);
	return rc;
}

static int ensure_discovered(struct oidc *o)
{
	int done, rc;
	pthread_mutex_lock(&o->mu);
	done = o->discovered;
	pthread_mutex_unlock(&o->mu);
	if (done)
		return AL_OK;
	pthread_mutex_lock(&o->fetch_mu);
	rc = discover_locked(o);
	pthread_mutex_unlock(&o->fetch_mu);
	return rc;
}

/* The current keys (a new reference, NULL if none yet) and their generation. */
static struct jwt_keyset *keys_current(struct oidc *o, unsigned *gen, int64_t *age_ms)
{
	struct jwt_keyset *ks;
	pthread_mutex_lock(&o->mu);
	ks = jwt_keyset_ref(o->keys);
	*gen = o->keys_gen;
	*age_ms = util_monotonic_ms() - o->keys_fetched_ms;
	pthread_mutex_unlock(&o->mu);
	return ks;
}

/* Fetches the JWKS unless someone else did since generation `seen`, or we
 * tried less than `min_interval_ms` ago. AL_OK if there are (possibly
 * unchanged) keys to try; AL_ERR_UNAVAILABLE when there are none. */
static int keys_refetch(struct oidc *o, unsigned seen, int64_t min_interval_ms)
{
	struct jwt_keyset *ks = NULL;
	json_t *doc = NULL;
	char *text = NULL;
	long status = 0;
	int64_t now;
	int rc, have;

	pthread_mutex_lock(&o->fetch_mu);
	pthread_mutex_lock(&o->mu);
	now = util_monotonic_ms();
	have = o->keys != NULL;
	if (o->keys_gen != seen || (o->have_keys_attempt && now - o->keys_attempt_ms < min_interval_ms)) {
		pthread_mutex_unlock(&o->mu);
		pthread_mutex_unlock(&o->fetch_mu);
		return have ? AL_OK : al_error_set(AL_ERR_UNAVAILABLE, "the identity provider's keys could not be fetched "
								       "a moment ago; try again in a few seconds");
	}
	o->have_keys_attempt = 1;
	o->keys_attempt_ms = now;
	pthread_mutex_unlock(&o->mu);

	if ((rc = fetch_json(o, o->jwks_uri, NULL, NULL, &status, &doc)))
		goto out;
	if (status != 200 || !doc) {
		rc = al_error_set(AL_ERR_UNAVAILABLE, "the identity provider answered %ld for its keys (%s)", status,
				  o->jwks_uri);
		goto out;
	}
	if (!(text = json_dumps(doc, JSON_COMPACT))) {
		rc = al_error_set(AL_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((rc = jwt_keyset_parse(&ks, text, strlen(text)))) {
		rc = al_error_wrap(AL_ERR_UNAVAILABLE, "keys from %s", o->jwks_uri);
		goto out;
	}
	pthread_mutex_lock(&o->mu);
	jwt_keyset_unref(o->keys);
	o->keys = ks;
	o->keys_gen++;
	o->keys_fetched_ms = util_monotonic_ms();
	pthread_mutex_unlock(&o->mu);
	log_info("oidc: fetched %zu signing keys from %s", jwt_keyset_count(ks), o->jwks_uri);
out:
	free(text);
	json_decref(doc);
	pthread_mutex_unlock(&o->fetch_mu);
	if (rc && have) {
		/* Keep verifying with the keys we had; say why the refresh failed. */
		log_warn("oidc: cannot refresh the signing keys: %s", al_error_message());
		return AL_OK;
	}
	return rc;
}

int oidc_prefetch(struct oidc *o)
{
	unsigned gen;
	int64_t age;
	struct jwt_keyset *ks;
	int rc;
	if ((rc = ensure_discovered(o)))
		return rc;
	ks = keys_current(o, &gen, &age);
	jwt_keyset_unref(ks);
	return ks ? AL_OK : keys_refetch(o, gen, OIDC_RETRY_MS);
}

/* Verifies a token's signature with our keys, refetching them once on an
 * unknown kid (rate-limited), then checks its claims. */
static int verify_token(struct oidc *o, const char *token, const struct jwt_expect *expect, json_t **out_claims)
{
	struct jwt_keyset *ks;
	unsigned gen;
	int64_t age;
	int rc;

	*out_claims = NULL;
	if ((rc = ensure_discovered(o)))
		return rc;
	ks = keys_current(o, &gen, &age);
	if (!ks || age > OIDC_JWKS_MAX_AGE_MS) {
		jwt_keyset_unref(ks);
		if ((rc = keys_refetch(o, gen, OIDC_RETRY_MS)))
			return rc;
		ks = keys_current(o, &gen, &age);
	}
	rc = jwt_verify(ks, token, (const char *const *)o->algorithms, out_claims);
	jwt_keyset_unref(ks);
	if (rc == AL_ERR_NOT_FOUND) {
		/* A kid we do not know: the provider may have rotated its keys. */
		unsigned before = gen;
		if ((rc = keys_refetch(o, gen, o->refetch_ms)))
			return rc;
		ks = keys_current(o, &gen, &age);
		if (gen != before)
			rc = jwt_verify(ks, token, (const char *const *)o->algorithms, out_claims);
		else
			rc = al_error_set(AL_ERR_NOT_FOUND, "the token is signed with a key the identity provider "
							    "does not publish");
		jwt_keyset_unref(ks);
		if (rc == AL_ERR_NOT_FOUND)
			rc = AL_ERR_UNAUTHORIZED; /* the message stays */
	}
	if (rc)
		return rc;
	if ((rc = jwt_check_claims(*out_claims, expect, (int64_t)time(NULL)))) {
		json_decref(*out_claims);
		*out_claims = NULL;
	}
	return rc;
}

/* ---- identity ---------------------------------------------------------- */

static void add_roles(struct oidc *o, const json_t *list, int have[N_ROLES])
{
	size_t i;
	json_t *r;
	json_array_foreach(list, i, r) {
		const char *to = json_string_value(json_object_get(o->role_mapping, json_string_value(r) ?
									    json_string_value(r) : ""));
		for (size_t k = 0; to && k < N_ROLES; k++)
			if (!strcmp(to, role_order[k]))
				have[k] = 1;
	}
}

/* A workspace name as Kubernetes allows object names (RFC 1123 subdomain). */
static int ws_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
			return 0;
	return 1;
}

int oidc_user_from_claims(struct oidc *o, const json_t *claims, json_t **out_user)
{
	const char *username = json_string_value(json_object_get(claims, "preferred_username"));
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	json_t *roles = NULL, *ws = NULL, *user, *g;
	int have[N_ROLES] = { 0 };
	size_t prefix_len = strlen(o->ws_prefix), i;

	*out_user = NULL;
	if (!username)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token has no preferred_username: add the 'profile' "
							 "scope (or its username mapper) to the client");
	if (accounts_check_username(username))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the identity provider's username is not a valid airlock "
							 "username (lower-case letters, digits, '.', '_', '@', '-')");
	add_roles(o, json_object_get(json_object_get(claims, "realm_access"), "roles"), have);
	add_roles(o, json_object_get(json_object_get(json_object_get(claims, "resource_access"), o->client_id),
				     "roles"),
		  have);
	if (!(roles = json_array()) || !(ws = json_array()))
		goto nomem;
	for (size_t k = 0; k < N_ROLES; k++)
		if (have[k] && json_array_append_new(roles, json_string(role_order[k])))
			goto nomem;
	json_array_foreach(json_object_get(claims, o->groups_claim), i, g) {
		const char *path = json_string_value(g), *name;
		size_t j;
		json_t *seen;
		int dup = 0;
		if (!path || strncmp(path, o->ws_prefix, prefix_len))
			continue;
		name = path + prefix_len;
		/* Subgroups (a further '/') are not the workspace itself. */
		if (strchr(name, '/') || !ws_name_ok(name))
			continue;
		json_array_foreach(ws, j, seen)
			if (!strcmp(json_string_value(seen), name))
				dup = 1;
		if (!dup && json_array_append_new(ws, json_string(name)))
			goto nomem;
	}
	user = json_pack("{s:s, s:o, s:o, s:s, s:s}", "username", username, "roles", roles, "workspaces", ws,
			 "subject", sub ? sub : "", "source", "oidc");
	if (!user)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	*out_user = user;
	return AL_OK;
nomem:
	json_decref(roles);
	json_decref(ws);
	return al_error_set(AL_ERR_NOMEM, "out of memory");
}

int oidc_authenticate(struct oidc *o, const char *token, json_t **out_user)
{
	struct jwt_expect e = { .issuer = o->issuer, .audience = o->client_id, .typ = "Bearer",
				.leeway_seconds = o->leeway };
	json_t *claims = NULL;
	int rc;

	*out_user = NULL;
	if (!oidc_is_jwt(token))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the bearer token is not a JWT from the identity provider");
	if ((rc = verify_token(o, token, &e, &claims)))
		return rc;
	rc = oidc_user_from_claims(o, claims, out_user);
	json_decref(claims);
	return rc;
}

/* ---- authorization code flow ------------------------------------------ */

static int random_b64(char **out)
{
	unsigned char r[32];
	int rc;
	randombytes_buf(r, sizeof(r));
	rc = jwt_b64url_encode(r, sizeof(r), out);
	sodium_memzero(r, sizeof(r));
	return rc;
}

void oidc_login_free(struct oidc_login *l)
{
	if (!l)
		return;
	free(l->url);
	wipe_free(l->state);
	wipe_free(l->nonce);
	wipe_free(l->code_verifier);
	memset(l, 0, sizeof(*l));
}

int oidc_login_start(struct oidc *o, const char *redirect_uri, const char *scope, struct oidc_login *out)
{
	unsigned char digest[crypto_hash_sha256_BYTES];
	char *challenge = NULL;
	struct buf url;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!redirect_uri || !*redirect_uri)
		return al_error_set(AL_ERR_INVALID, "oidc login: a redirect URI is required");
	if ((rc = ensure_discovered(o)))
		return rc;
	buf_init(&url, 64 * 1024);
	if ((rc = random_b64(&out->state)) || (rc = random_b64(&out->nonce)) || (rc = random_b64(&out->code_verifier)))
		goto out;
	/* RFC 7636 4.2: S256 challenge = BASE64URL(SHA256(ASCII(verifier))). */
	crypto_hash_sha256(digest, (const unsigned char *)out->code_verifier, strlen(out->code_verifier));
	if ((rc = jwt_b64url_encode(digest, sizeof(digest), &challenge)))
		goto out;
	if ((rc = buf_appends(&url, o->authorization_endpoint)) ||
	    (rc = buf_appendc(&url, strchr(o->authorization_endpoint, '?') ? '&' : '?')) ||
	    (rc = add_param(&url, "response_type", "code")) || (rc = add_param(&url, "client_id", o->client_id)) ||
	    (rc = add_param(&url, "redirect_uri", redirect_uri)) ||
	    (rc = add_param(&url, "scope", scope && *scope ? scope : "openid")) ||
	    (rc = add_param(&url, "state", out->state)) || (rc = add_param(&url, "nonce", out->nonce)) ||
	    (rc = add_param(&url, "code_challenge", challenge)) ||
	    (rc = add_param(&url, "code_challenge_method", "S256")))
		goto out;
	out->url = buf_detach(&url);
out:
	free(challenge);
	buf_free(&url);
	if (rc)
		oidc_login_free(out);
	return rc;
}

int oidc_state_equal(const char *kept, const char *returned)
{
	size_t n;
	if (!kept || !returned || !*kept)
		return 0;
	n = strlen(kept);
	return strlen(returned) == n && sodium_memcmp(kept, returned, n) == 0;
}

void oidc_tokens_free(struct oidc_tokens *t)
{
	if (!t)
		return;
	json_decref(t->user);
	wipe_free(t->access_token);
	wipe_free(t->id_token);
	wipe_free(t->refresh_token);
	memset(t, 0, sizeof(*t));
}

/* Wipes the token strings inside a token endpoint answer before it is freed. */
static void wipe_token_answer(json_t *answer)
{
	static const char *const secret[] = { "access_token", "id_token", "refresh_token" };
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++) {
		json_t *v = json_object_get(answer, secret[i]);
		if (json_is_string(v))
			sodium_memzero((char *)json_string_value(v), json_string_length(v));
	}
}

static int copy_token(const json_t *answer, const char *name, int required, char **out)
{
	const char *v = json_string_value(json_object_get(answer, name));
	*out = NULL;
	if (!v)
		return required ? al_error_set(AL_ERR_UNAUTHORIZED, "the identity provider sent no %s", name) : AL_OK;
	if (!(*out = util_strdup(v)))
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	return AL_OK;
}

/* One call of the token endpoint as this confidential client: `form` (its
 * own parameters; client_id is added) with the client secret sent by HTTP
 * Basic (client_secret_basic: both parts form-encoded first, RFC 6749
 * 2.3.1). *answer is the JSON of a 200 answer with a Bearer token_type.
 * `what` names the step in messages ("login", "refresh"). A refusal is
 * AL_ERR_UNAUTHORIZED with the provider's error code (a known shape only)
 * in the message; a provider that cannot be reached or answers 5xx
 * AL_ERR_UNAVAILABLE. */
static int token_call(struct oidc *o, struct buf *form, const char *what, json_t **answer)
{
	struct buf cred, basic;
	char *cred64 = NULL;
	const char *tt;
	long status = 0;
	int rc;

	*answer = NULL;
	buf_init(&cred, 16 * 1024);
	buf_init(&basic, 16 * 1024);
	if ((rc = add_param(form, "client_id", o->client_id)))
		goto out;
	if ((rc = oidc_url_encode(&cred, o->client_id)) || (rc = buf_appendc(&cred, ':')) ||
	    (rc = oidc_url_encode(&cred, o->client_secret)))
		goto out;
	{
		size_t n = sodium_base64_ENCODED_LEN(cred.len, sodium_base64_VARIANT_ORIGINAL);
		if (!(cred64 = malloc(n))) {
			rc = al_error_set(AL_ERR_NOMEM, "out of memory");
			goto out;
		}
		sodium_bin2base64(cred64, n, (const unsigned char *)cred.ptr, cred.len, sodium_base64_VARIANT_ORIGINAL);
		if ((rc = buf_appendf(&basic, "Basic %s", cred64)))
			goto out;
	}
	if ((rc = fetch_json(o, o->token_endpoint, basic.ptr, form->ptr, &status, answer)))
		goto out;
	if (status != 200 || !json_is_object(*answer)) {
		const char *err = json_string_value(json_object_get(*answer, "error"));
		char tame[64];
		size_t k;
		for (k = 0; err && err[k] && k + 1 < sizeof(tame) && ((err[k] >= 'a' && err[k] <= 'z') || err[k] == '_');
		     k++)
			tame[k] = err[k];
		tame[k] = '\0';
		rc = al_error_set(status >= 500 || status == 0 ? AL_ERR_UNAVAILABLE : AL_ERR_UNAUTHORIZED,
				  "the identity provider refused the %s (%ld%s%s)%s", what, status, k ? ", " : "", tame,
				  strcmp(what, "login") ? "" : ": start again");
		goto out;
	}
	tt = json_string_value(json_object_get(*answer, "token_type"));
	if (!tt || strcasecmp(tt, "Bearer"))
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "the identity provider sent a token that is not a Bearer token");
out:
	if (rc && *answer) {
		wipe_token_answer(*answer);
		json_decref(*answer);
		*answer = NULL;
	}
	if (cred.ptr)
		sodium_memzero(cred.ptr, cred.len);
	if (basic.ptr)
		sodium_memzero(basic.ptr, basic.len);
	buf_free(&cred);
	buf_free(&basic);
	wipe_free(cred64);
	return rc;
}

/* The tokens of a token endpoint answer, verified: the ID token (required
 * at login, optional on a refresh; nonce checked when given), the access
 * token, and that both name the same subject - and `subject`, when given
 * (a refresh must not turn into another person). The user comes from the
 * access token's claims, as for a bearer token. */
static int tokens_from_answer(struct oidc *o, const json_t *answer, const char *nonce, int id_required,
			      const char *subject, struct oidc_tokens *out)
{
	struct jwt_expect id_e = { .issuer = o->issuer, .audience = o->client_id, .nonce = nonce, .typ = "ID",
				   .id_token = 1, .leeway_seconds = o->leeway };
	struct jwt_expect at_e = { .issuer = o->issuer, .audience = o->client_id, .typ = "Bearer",
				   .leeway_seconds = o->leeway };
	json_t *id_claims = NULL, *at_claims = NULL, *rexp;
	const char *s1, *s2;
	int rc;

	if ((rc = copy_token(answer, "access_token", 1, &out->access_token)) ||
	    (rc = copy_token(answer, "id_token", id_required, &out->id_token)) ||
	    (rc = copy_token(answer, "refresh_token", 0, &out->refresh_token)))
		goto out;
	if (out->id_token && (rc = verify_token(o, out->id_token, &id_e, &id_claims))) {
		al_error_wrap(rc, "ID token");
		goto out;
	}
	if (!oidc_is_jwt(out->access_token)) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "the identity provider's access token is not a JWT");
		goto out;
	}
	if ((rc = verify_token(o, out->access_token, &at_e, &at_claims))) {
		al_error_wrap(rc, "access token");
		goto out;
	}
	s1 = id_claims ? json_string_value(json_object_get(id_claims, "sub")) : subject;
	s2 = json_string_value(json_object_get(at_claims, "sub"));
	if ((id_claims && (!s1 || !s2 || strcmp(s1, s2))) || (subject && (!s2 || strcmp(subject, s2)))) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "the ID token and the access token name different users");
		goto out;
	}
	if ((rc = oidc_user_from_claims(o, at_claims, &out->user)))
		goto out;
	out->expires_at = (int64_t)json_number_value(json_object_get(at_claims, "exp"));
	/* Keycloak says how long its refresh token lives (not a standard
	 * field; 0 means "no end of its own", an offline token). */
	rexp = json_object_get(answer, "refresh_expires_in");
	if (json_is_integer(rexp) && json_integer_value(rexp) > 0)
		out->refresh_expires_at = (int64_t)time(NULL) + (int64_t)json_integer_value(rexp);
out:
	json_decref(id_claims);
	json_decref(at_claims);
	return rc;
}

/* A token request's form holds a code, verifier or refresh token. */
static void wipe_form(struct buf *form)
{
	if (form->ptr)
		sodium_memzero(form->ptr, form->len);
	buf_free(form);
}

/* One call of the token endpoint with a grant (the code exchange or a
 * refresh), then the tokens checked as tokens_from_answer says. The form
 * holds the grant's own parameters; it and the answer are wiped here. */
static int token_grant(struct oidc *o, struct buf *form, const char *what, const char *nonce, int id_required,
		       const char *subject, struct oidc_tokens *out)
{
	json_t *answer = NULL;
	int rc = token_call(o, form, what, &answer);

	if (!rc)
		rc = tokens_from_answer(o, answer, nonce, id_required, subject, out);
	wipe_form(form);
	wipe_token_answer(answer);
	json_decref(answer);
	if (rc)
		oidc_tokens_free(out);
	return rc;
}

int oidc_login_finish(struct oidc *o, const char *code, const char *redirect_uri, const char *code_verifier,
		      const char *nonce, struct oidc_tokens *out)
{
	struct buf form;
	int rc;

	memset(out, 0, sizeof(*out));
	buf_init(&form, 64 * 1024);
	if (!o->client_secret)
		return al_error_set(AL_ERR_INVALID, "oidc: browser login needs oidc.clientSecretFile");
	if (!code || !*code || !redirect_uri || !code_verifier || !nonce)
		return al_error_set(AL_ERR_INVALID, "oidc login: code, redirect URI, code verifier and nonce are required");
	if ((rc = ensure_discovered(o)) || (rc = add_param(&form, "grant_type", "authorization_code")) ||
	    (rc = add_param(&form, "code", code)) || (rc = add_param(&form, "redirect_uri", redirect_uri)) ||
	    (rc = add_param(&form, "code_verifier", code_verifier))) {
		wipe_form(&form);
		return rc;
	}
	return token_grant(o, &form, "login", nonce, 1, NULL, out);
}

int oidc_refresh(struct oidc *o, const char *refresh_token, const char *subject, struct oidc_tokens *out)
{
	struct buf form;
	int rc;

	memset(out, 0, sizeof(*out));
	buf_init(&form, 64 * 1024);
	if (!o->client_secret)
		return al_error_set(AL_ERR_INVALID, "oidc: refreshing a web session needs oidc.clientSecretFile");
	if (!refresh_token || !*refresh_token || !subject || !*subject)
		return al_error_set(AL_ERR_INVALID, "oidc refresh: the refresh token and the subject are required");
	if ((rc = ensure_discovered(o)) || (rc = add_param(&form, "grant_type", "refresh_token")) ||
	    (rc = add_param(&form, "refresh_token", refresh_token))) {
		wipe_form(&form);
		return rc;
	}
	return token_grant(o, &form, "refresh", NULL, 0, subject, out);
}

int oidc_logout_url(struct oidc *o, const char *id_token_hint, const char *post_logout_redirect_uri, char **out)
{
	struct buf url;
	int rc;

	*out = NULL;
	if ((rc = ensure_discovered(o)))
		return rc;
	if (!o->end_session_endpoint)
		return al_error_set(AL_ERR_NOT_FOUND, "the identity provider has no end_session_endpoint");
	buf_init(&url, 64 * 1024);
	if ((rc = buf_appends(&url, o->end_session_endpoint)) ||
	    (rc = buf_appendc(&url, strchr(o->end_session_endpoint, '?') ? '&' : '?')) ||
	    (rc = add_param(&url, "client_id", o->client_id)) ||
	    (id_token_hint && (rc = add_param(&url, "id_token_hint", id_token_hint))) ||
	    (post_logout_redirect_uri && (rc = add_param(&url, "post_logout_redirect_uri", post_logout_redirect_uri)))) {
		buf_free(&url);
		return rc;
	}
	*out = buf_detach(&url);
	return AL_OK;
}
