#include "auth/jwt.h"
#include "common/buf.h"
#include "common/error.h"

#include <cjose/jwk.h>
#include <cjose/jws.h>
#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum key_type { KTY_RSA = 1, KTY_EC = 2 };

struct jwt_key {
	char *kid;           /* NULL when the JWKS entry has none */
	char *alg;           /* the entry's alg, or NULL */
	enum key_type kty;
	int curve_bits;      /* EC: 256, 384 or 521 */
	size_t rsa_bytes;    /* RSA: modulus length, the length of every signature */
	cjose_jwk_t *jwk;    /* public key only */
};

struct jwt_keyset {
	int refs;            /* atomic */
	size_t n;
	struct jwt_key keys[JWT_MAX_KEYS];
};

/* RSA keys shorter than this are not trusted (NIST SP 800-131A). */
#define RSA_MIN_BYTES 256

static const char *const default_algs[] = { "RS256", "ES256", NULL };

static const char *const supported_algs[] = { "RS256", "RS384", "RS512", "PS256", "PS384",
					      "PS512", "ES256", "ES384", "ES512", NULL };

int jwt_alg_supported(const char *alg)
{
	for (size_t i = 0; alg && supported_algs[i]; i++)
		if (!strcmp(alg, supported_algs[i]))
			return 1;
	return 0;
}

/* ---- base64url ----------------------------------------------------------- */

int jwt_b64url_encode(const void *data, size_t len, char **out)
{
	size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s = malloc(n);
	*out = NULL;
	if (!s)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	sodium_bin2base64(s, n, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	*out = s;
	return AL_OK;
}

int jwt_b64url_decode(const char *text, size_t len, unsigned char **out, size_t *out_len)
{
	size_t max = len / 4 * 3 + 3, n = 0;
	unsigned char *bin;

	*out = NULL;
	*out_len = 0;
	bin = malloc(max + 1);
	if (!bin)
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	/* No ignore set and no end pointer: any character outside the alphabet,
	 * padding, or non-zero spare bits fail, so each value has one encoding. */
	if (sodium_base642bin(bin, max, text, len, NULL, &n, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING)) {
		free(bin);
		return al_error_set(AL_ERR_INVALID, "not base64url");
	}
	bin[n] = '\0';
	*out = bin;
	*out_len = n;
	return AL_OK;
}

static int is_b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int jwt_looks_like(const char *token)
{
	size_t seg = 0, seglen = 0, i;
	if (!token)
		return 0;
	for (i = 0; token[i]; i++) {
		if (i >= JWT_MAX_LEN)
			return 0;
		if (token[i] == '.') {
			if (seglen == 0 || ++seg > 2)
				return 0;
			seglen = 0;
		} else if (is_b64url_char(token[i])) {
			seglen++;
		} else {
			return 0;
		}
	}
	return seg == 2 && seglen > 0;
}

/* ---- key sets ----------------------------------------------------------- */

static void key_clear(struct jwt_key *k)
{
	free(k->kid);
	free(k->alg);
	if (k->jwk)
		cjose_jwk_release(k->jwk);
	memset(k, 0, sizeof(*k));
}

static int b64_member_len(const json_t *jwk, const char *name, size_t *out)
{
	const char *v = json_string_value(json_object_get(jwk, name));
	unsigned char *bin = NULL;
	size_t n = 0, skip = 0;
	if (!v || !*v || jwt_b64url_decode(v, strlen(v), &bin, &n))
		return AL_ERR_INVALID;
	while (skip < n && bin[skip] == 0) /* leading zero octets do not count */
		skip++;
	free(bin);
	*out = n - skip;
	return AL_OK;
}

/* One JWKS entry into *k, keeping only what verifying needs. AL_ERR_INVALID
 * means "skip this entry" (not usable for verifying our tokens). */
static int key_from_json(struct jwt_key *k, const json_t *e)
{
	const char *kty = json_string_value(json_object_get(e, "kty"));
	const char *use = json_string_value(json_object_get(e, "use"));
	const char *alg = json_string_value(json_object_get(e, "alg"));
	const json_t *kid = json_object_get(e, "kid"), *ops = json_object_get(e, "key_ops");
	json_t *pub = NULL;
	char *text = NULL;
	cjose_err err;
	size_t n;

	memset(k, 0, sizeof(*k));
	if (!json_is_object(e) || !kty)
		return AL_ERR_INVALID;
	if (json_object_get(e, "use") && (!use || strcmp(use, "sig")))
		return AL_ERR_INVALID;
	if (ops) {
		size_t i;
		json_t *op;
		int verify = 0;
		json_array_foreach(ops, i, op)
			if (json_is_string(op) && !strcmp(json_string_value(op), "verify"))
				verify = 1;
		if (!verify)
			return AL_ERR_INVALID;
	}
	if (json_object_get(e, "alg") && !jwt_alg_supported(alg))
		return AL_ERR_INVALID;
	if (kid && !json_is_string(kid))
		return AL_ERR_INVALID;

	if (!strcmp(kty, "RSA")) {
		if (b64_member_len(e, "n", &k->rsa_bytes) || k->rsa_bytes < RSA_MIN_BYTES ||
		    b64_member_len(e, "e", &n) || n == 0)
			return AL_ERR_INVALID;
		k->kty = KTY_RSA;
		pub = json_pack("{s:s, s:O, s:O}", "kty", "RSA", "n", json_object_get(e, "n"), "e",
				json_object_get(e, "e"));
	} else if (!strcmp(kty, "EC")) {
		const char *crv = json_string_value(json_object_get(e, "crv"));
		if (!crv)
			return AL_ERR_INVALID;
		if (!strcmp(crv, "P-256"))
			k->curve_bits = 256;
		else if (!strcmp(crv, "P-384"))
			k->curve_bits = 384;
		else if (!strcmp(crv, "P-521"))
			k->curve_bits = 521;
		else
			return AL_ERR_INVALID;
		if (b64_member_len(e, "x", &n) || b64_member_len(e, "y", &n))
			return AL_ERR_INVALID;
		k->kty = KTY_EC;
		pub = json_pack("{s:s, s:s, s:O, s:O}", "kty", "EC", "crv", crv, "x", json_object_get(e, "x"), "y",
				json_object_get(e, "y"));
	} else {
		return AL_ERR_INVALID; /* "oct" and anything else: never a verification key */
	}
	if (!pub || !(text = json_dumps(pub, JSON_COMPACT)))
		goto nomem;
	json_decref(pub);
	pub = NULL;
	k->jwk = cjose_jwk_import(text, strlen(text), &err);
	free(text);
	if (!k->jwk)
		return AL_ERR_INVALID; /* not a valid point / modulus */
	if ((kid && !(k->kid = strdup(json_string_value(kid)))) || (alg && !(k->alg = strdup(alg))))
		goto nomem;
	return AL_OK;
nomem:
	json_decref(pub);
	key_clear(k);
	return al_error_set(AL_ERR_NOMEM, "out of memory");
}

int jwt_keyset_parse(struct jwt_keyset **out, const char *json, size_t len)
{
	json_t *doc, *keys, *e;
	struct jwt_keyset *ks;
	json_error_t jerr;
	size_t i;
	int rc;

	*out = NULL;
	doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	keys = json_object_get(doc, "keys");
	if (!json_is_array(keys)) {
		json_decref(doc);
		return al_error_set(AL_ERR_INVALID, "the JWKS document is not a JSON object with a \"keys\" list");
	}
	if (!(ks = calloc(1, sizeof(*ks)))) {
		json_decref(doc);
		return al_error_set(AL_ERR_NOMEM, "out of memory");
	}
	ks->refs = 1;
	json_array_foreach(keys, i, e) {
		if (ks->n == JWT_MAX_KEYS)
			break;
		rc = key_from_json(&ks->keys[ks->n], e);
		if (rc == AL_ERR_NOMEM) {
			json_decref(doc);
			jwt_keyset_unref(ks);
			return rc;
		}
		if (rc == AL_OK)
			ks->n++;
	}
	json_decref(doc);
	*out = ks;
	return AL_OK;
}

struct jwt_keyset *jwt_keyset_ref(struct jwt_keyset *ks)
{
	if (ks)
		__atomic_add_fetch(&ks->refs, 1, __ATOMIC_RELAXED);
	return ks;
}

void jwt_keyset_unref(struct jwt_keyset *ks)
{
	if (!ks || __atomic_sub_fetch(&ks->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; i < ks->n; i++)
		key_clear(&ks->keys[i]);
	free(ks);
}

size_t jwt_keyset_count(const struct jwt_keyset *ks)
{
	return ks ? ks->n : 0;
}

/* ---- verification ---------------------------------------------------------- */

/* Does key k serve alg (and, for ES, with a signature of sig_len bytes)? */
static int key_fits(const struct jwt_key *k, const char *alg, size_t sig_len)
{
	if (k->alg && strcmp(k->alg, alg))
		return 0;
	if (alg[0] == 'R' || alg[0] == 'P')
		return k->kty == KTY_RSA && sig_len == k->rsa_bytes;
	if (alg[0] == 'E') {
		int bits = atoi(alg + 2);
		size_t half = (size_t)(k->curve_bits + 7) / 8;
		/* ES512 runs on P-521; a JWS ECDSA signature is r || s, each the
		 * curve's length (RFC 7518 3.4), so the length is exact. */
		return k->kty == KTY_EC && (bits == k->curve_bits || (bits == 512 && k->curve_bits == 521)) &&
		       sig_len == 2 * half;
	}
	return 0;
}

/* A kid or alg quoted in a message: only tame characters, bounded. */
static const char *tame(const char *s, char *out, size_t cap)
{
	size_t i;
	for (i = 0; s && s[i] && i + 1 < cap; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return "(unprintable)";
	}
	if (s && s[i])
		return "(too long)";
	memcpy(out, s ? s : "", i);
	out[i] = '\0';
	return out;
}

static int decode_json_segment(const char *seg, size_t len, const char *what, json_t **out)
{
	unsigned char *bin = NULL;
	size_t n = 0;
	json_error_t jerr;

	*out = NULL;
	if (jwt_b64url_decode(seg, len, &bin, &n))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's %s is not base64url", what);
	/* Duplicate names would let two parsers see two different claims. */
	*out = json_loadb((const char *)bin, n, JSON_REJECT_DUPLICATES, &jerr);
	sodium_memzero(bin, n);
	free(bin);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's %s is not a JSON object", what);
	}
	return AL_OK;
}

int jwt_peek_header(const char *token, json_t **out_header)
{
	const char *dot;
	*out_header = NULL;
	if (!jwt_looks_like(token))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token is not a signed JWT");
	dot = strchr(token, '.');
	return decode_json_segment(token, (size_t)(dot - token), "header", out_header);
}

/* The checks on the header that need no key. */
static int check_header(const json_t *hdr, const char *const *algorithms, const char **out_alg)
{
	const char *alg = json_string_value(json_object_get(hdr, "alg"));
	char tmp[32];
	int allowed = 0;

	*out_alg = NULL;
	if (!alg)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's header has no alg");
	/* Refused whatever the configuration says: an unsigned token proves
	 * nothing, and HS* would make a public key into a shared secret. */
	if (!strcasecmp(alg, "none"))
		return al_error_set(AL_ERR_UNAUTHORIZED, "unsigned tokens (alg none) are never accepted");
	if (!strncasecmp(alg, "HS", 2))
		return al_error_set(AL_ERR_UNAUTHORIZED, "tokens signed with a shared secret (%s) are never accepted",
				    tame(alg, tmp, sizeof(tmp)));
	for (size_t i = 0; algorithms[i]; i++)
		if (!strcmp(alg, algorithms[i]) && jwt_alg_supported(alg))
			allowed = 1;
	if (!allowed)
		return al_error_set(AL_ERR_UNAUTHORIZED, "tokens signed with %s are not accepted here",
				    tame(alg, tmp, sizeof(tmp)));
	if (json_object_get(hdr, "crit"))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's header has critical extensions (crit), "
							 "which are not supported");
	if (json_object_get(hdr, "kid") && !json_is_string(json_object_get(hdr, "kid")))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's kid is not a string");
	*out_alg = alg;
	return AL_OK;
}

int jwt_verify(const struct jwt_keyset *ks, const char *token, const char *const *algorithms,
	       json_t **out_claims)
{
	json_t *hdr = NULL, *claims = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0, tlen, n_kid = 0, n_fit = 0;
	const char *alg, *kid, *dot1, *dot2;
	const struct jwt_key *fit[JWT_MAX_KEYS];
	cjose_jws_t *jws = NULL;
	cjose_err err;
	char tmp[80];
	int rc, ok = 0;

	*out_claims = NULL;
	if (!algorithms)
		algorithms = default_algs;
	if (!jwt_looks_like(token))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token is not a signed JWT");
	tlen = strlen(token);
	dot1 = strchr(token, '.');
	dot2 = strchr(dot1 + 1, '.');
	if ((rc = decode_json_segment(token, (size_t)(dot1 - token), "header", &hdr)) ||
	    (rc = check_header(hdr, algorithms, &alg)))
		goto out;
	kid = json_string_value(json_object_get(hdr, "kid"));
	if (jwt_b64url_decode(dot2 + 1, tlen - (size_t)(dot2 + 1 - token), &sig, &sig_len)) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "the token's signature is not base64url");
		goto out;
	}
	for (size_t i = 0; ks && i < ks->n; i++) {
		const struct jwt_key *k = &ks->keys[i];
		if (kid && (!k->kid || strcmp(k->kid, kid)))
			continue;
		n_kid++;
		if (key_fits(k, alg, sig_len))
			fit[n_fit++] = k;
	}
	if (n_fit == 0) {
		if (kid && n_kid)
			rc = al_error_set(AL_ERR_UNAUTHORIZED, "key '%s' cannot verify a %s signature of this length",
					  tame(kid, tmp, sizeof(tmp)), alg);
		else if (kid)
			rc = al_error_set(AL_ERR_NOT_FOUND, "the identity provider has no key '%s'",
					  tame(kid, tmp, sizeof(tmp)));
		else
			rc = al_error_set(AL_ERR_NOT_FOUND, "no key of the identity provider fits this %s token", alg);
		goto out;
	}
	if (!(jws = cjose_jws_import(token, tlen, &err))) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "the token is not a valid JWS");
		goto out;
	}
	for (size_t i = 0; i < n_fit && !ok; i++)
		ok = cjose_jws_verify(jws, fit[i]->jwk, &err);
	if (!ok) {
		rc = al_error_set(AL_ERR_UNAUTHORIZED, "the token's signature does not verify");
		goto out;
	}
	if ((rc = decode_json_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1), "payload", &claims)))
		goto out;
	*out_claims = claims;
	claims = NULL;
out:
	if (jws)
		cjose_jws_release(jws);
	free(sig);
	json_decref(hdr);
	json_decref(claims);
	return rc;
}

/* ---- claims ------------------------------------------------------------ */

/* A NumericDate claim: AL_OK with *present 0 when absent. */
static int numeric_date(const json_t *claims, const char *name, int *present, int64_t *out)
{
	const json_t *v = json_object_get(claims, name);
	double d;
	*present = v != NULL;
	*out = 0;
	if (!v)
		return AL_OK;
	if (!json_is_number(v))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's %s is not a number", name);
	d = json_number_value(v);
	/* Beyond year 2286 or negative: not a date a real issuer writes. */
	if (!isfinite(d) || d < 0 || d > 1e10)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's %s is out of range", name);
	*out = (int64_t)d;
	return AL_OK;
}

static int aud_contains(const json_t *aud, const char *want, size_t *count)
{
	size_t i;
	json_t *a;
	int found = 0;
	*count = 0;
	if (json_is_string(aud)) {
		*count = 1;
		return !strcmp(json_string_value(aud), want);
	}
	json_array_foreach(aud, i, a) {
		(*count)++;
		if (json_is_string(a) && !strcmp(json_string_value(a), want))
			found = 1;
	}
	return found;
}

int jwt_check_claims(const json_t *claims, const struct jwt_expect *e, int64_t now)
{
	const char *iss = json_string_value(json_object_get(claims, "iss"));
	const char *sub = json_string_value(json_object_get(claims, "sub"));
	const json_t *aud = json_object_get(claims, "aud"), *azp_v = json_object_get(claims, "azp");
	const json_t *typ = json_object_get(claims, "typ");
	const char *azp = json_string_value(azp_v);
	int64_t exp, nbf, iat, leeway = e->leeway_seconds > 0 ? e->leeway_seconds : 0;
	int has_exp, has_nbf, has_iat, in_aud, rc;
	size_t n_aud = 0;

	if (!json_is_object(claims))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's claims are not a JSON object");
	if (!iss || strcmp(iss, e->issuer))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token was not issued by %s", e->issuer);
	if ((rc = numeric_date(claims, "exp", &has_exp, &exp)) || (rc = numeric_date(claims, "nbf", &has_nbf, &nbf)) ||
	    (rc = numeric_date(claims, "iat", &has_iat, &iat)))
		return rc;
	if (!has_exp)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token has no expiry (exp)");
	if (now > exp + leeway)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token has expired: log in again");
	if (has_nbf && nbf > now + leeway)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token is not valid yet (nbf in the future)");
	if (has_iat && (iat > now + leeway || iat > exp))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's issue time (iat) is in the future or after its expiry");
	if (!has_iat && e->id_token)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the ID token has no issue time (iat)");
	if (!sub || !*sub)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token has no subject (sub)");
	if (aud && !json_is_string(aud) && !json_is_array(aud))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's aud is neither a string nor a list");
	if (azp_v && !azp)
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's azp is not a string");
	in_aud = aud && aud_contains(aud, e->audience, &n_aud);
	if (e->id_token) {
		if (!in_aud)
			return al_error_set(AL_ERR_UNAUTHORIZED, "the ID token is not meant for %s", e->audience);
		if ((azp || n_aud > 1) && (!azp || strcmp(azp, e->audience)))
			return al_error_set(AL_ERR_UNAUTHORIZED, "the ID token was issued to another party (azp)");
	} else if (!in_aud && !(azp && !strcmp(azp, e->audience))) {
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token is not meant for %s (neither aud nor azp names it)",
				    e->audience);
	}
	if (e->typ && typ && (!json_is_string(typ) || strcmp(json_string_value(typ), e->typ)))
		return al_error_set(AL_ERR_UNAUTHORIZED, "the token's type is not %s", e->typ);
	if (e->nonce) {
		const char *nonce = json_string_value(json_object_get(claims, "nonce"));
		size_t len = strlen(e->nonce);
		if (!nonce || strlen(nonce) != len || sodium_memcmp(nonce, e->nonce, len))
			return al_error_set(AL_ERR_UNAUTHORIZED, "the ID token's nonce does not match this login");
	}
	return AL_OK;
}
