/*
 * jwt.h - verifying signed JSON Web Tokens (JWS compact serialisation,
 * RFC 7515 / 7519) against keys we fetched ourselves; no network here.
 *
 * What it promises:
 *  - Signatures are checked by cjose (OpenSSL underneath), always with a key
 *    from a key set the caller passes. Keys a token carries or points to in
 *    its header (jwk, jku, x5c, x5u) are never read.
 *  - The header's alg must be on the caller's allow-list, which can only
 *    hold asymmetric algorithms (RS/PS 256/384/512, ES256/384/512); "none"
 *    and every HS* are refused whatever the list says, so a public key can
 *    never be used as an HMAC secret. The key must fit the alg (RSA for
 *    RS/PS, the matching curve for ES) and, if it names an alg or a use,
 *    agree with it. A header with "crit" is refused (we implement no
 *    extensions), and so is JSON with duplicate member names.
 *  - A key set keeps only the public members of RSA and EC keys; symmetric
 *    ("oct") keys, keys for encryption and keys it cannot import are left
 *    out, so nothing in a JWKS can turn into a shared secret.
 *  - jwt_verify() says AL_ERR_NOT_FOUND only for "no key with this kid",
 *    the one case where fetching the keys again may help; every other
 *    failure is AL_ERR_UNAUTHORIZED. Messages never contain the token.
 *
 * Thread safety: a key set is immutable once parsed and may be used from
 * many threads; jwt_keyset_ref/unref are atomic.
 * Ownership: inputs are borrowed; json_t ** outputs are new references and
 * char ** outputs new strings, owned by the caller.
 */
#ifndef AL_AUTH_JWT_H
#define AL_AUTH_JWT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Longest token accepted (Keycloak tokens with many groups run to a few KiB). */
#define JWT_MAX_LEN (32 * 1024)
/* Most keys kept from one JWKS document. */
#define JWT_MAX_KEYS 64

struct jwt_keyset;

/* Parses a JWKS document ({"keys": [...]}); keys that cannot serve (see
 * above) are skipped. A set with no usable key is valid (every token then
 * fails with AL_ERR_NOT_FOUND). AL_ERR_INVALID for a document that is not
 * a JWKS. */
int jwt_keyset_parse(struct jwt_keyset **out, const char *json, size_t len);
/* Another reference to ks (NULL-safe); drop it with jwt_keyset_unref. */
struct jwt_keyset *jwt_keyset_ref(struct jwt_keyset *ks);
void jwt_keyset_unref(struct jwt_keyset *ks);
/* Number of usable keys. */
size_t jwt_keyset_count(const struct jwt_keyset *ks);

/* 1 if alg is one the allow-list may hold (asymmetric, known to cjose). */
int jwt_alg_supported(const char *alg);
/* 1 if token has the shape of a compact JWS: three base64url segments. */
int jwt_looks_like(const char *token);

/* Verifies the signature of `token` with a key of `ks` and returns its
 * claims (a JSON object). `algorithms` is a NULL-terminated allow-list;
 * NULL means RS256 and ES256. A token without kid is tried against every
 * key that fits its alg. Claims are NOT checked here: see jwt_check_claims. */
int jwt_verify(const struct jwt_keyset *ks, const char *token, const char *const *algorithms,
	       json_t **out_claims);

/* The header of a token, decoded but not verified (for diagnostics and
 * tests). */
int jwt_peek_header(const char *token, json_t **out_header);

struct jwt_expect {
	const char *issuer;    /* iss must equal this exactly */
	const char *audience;  /* our client id */
	const char *nonce;     /* ID token: nonce must equal this; NULL: not checked */
	const char *typ;       /* if the token has a "typ" claim it must equal this
				* (Keycloak: "Bearer" for access, "ID" for ID tokens); NULL: any */
	int id_token;          /* OIDC Core 3.1.3.7: aud must contain audience, and azp
				* must equal it when present or when aud has several
				* entries; iat is required */
	int leeway_seconds;    /* clock skew allowed for exp, nbf and iat */
};

/* Checks the registered claims: iss; aud contains audience or azp equals it
 * (ID tokens: see above); exp required and not past (now - leeway); nbf, if
 * present, not after now + leeway; iat, if present, a number not after
 * now + leeway nor after exp; sub a non-empty string. `now` is Unix seconds.
 * AL_ERR_UNAUTHORIZED with a message naming the failed check. */
int jwt_check_claims(const json_t *claims, const struct jwt_expect *expect, int64_t now);

/* base64url without padding (RFC 7515 section 2). encode: a new string.
 * decode: *out a new buffer of *out_len bytes plus a NUL, so text can be
 * used as a string. AL_ERR_INVALID for bad input. */
int jwt_b64url_encode(const void *data, size_t len, char **out);
int jwt_b64url_decode(const char *text, size_t len, unsigned char **out, size_t *out_len);

#endif
