/* Tests for auth/jwt and auth/oidc: signatures, key selection, claim checks,
 * the mapping of claims to a user, the JWKS cache, and the authorization
 * code flow, against a provider played by an in-memory HTTP function. The
 * tokens are signed here with OpenSSL keys made for the test, independently
 * of the library that verifies them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "auth/oidc.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/util.h"
#include "config/config.h"

#define ISS "https://kc.test/realms/airlock"
#define CLIENT "airlock"

/* ---- keys and token minting ------------------------------------------------ */

struct tkey {
	EVP_PKEY *pk;
	int ec;
	const char *kid;
	json_t *jwk; /* public JWK */
};

static struct tkey rsa_a, rsa_b, ec_a, rsa_evil;

static char *b64(const void *data, size_t len)
{
	char *s = NULL;
	assert_int_equal(jwt_b64url_encode(data, len, &s), AL_OK);
	return s;
}

static json_t *bn_member(EVP_PKEY *pk, const char *param, size_t pad)
{
	BIGNUM *bn = NULL;
	unsigned char bin[1024];
	size_t n;
	char *s;
	json_t *v;
	assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
	n = pad ? pad : (size_t)BN_num_bytes(bn);
	assert_true(n <= sizeof(bin));
	assert_int_equal(BN_bn2binpad(bn, bin, (int)n), (int)n);
	BN_free(bn);
	s = b64(bin, n);
	v = json_string(s);
	free(s);
	return v;
}

static void key_make(struct tkey *k, int ec, const char *kid)
{
	k->ec = ec;
	k->kid = kid;
	k->pk = ec ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256") : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_non_null(k->pk);
	if (ec)
		k->jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "kty", "EC", "crv", "P-256", "kid", kid, "use",
				   "sig", "alg", "ES256", "x", bn_member(k->pk, OSSL_PKEY_PARAM_EC_PUB_X, 32), "y",
				   bn_member(k->pk, OSSL_PKEY_PARAM_EC_PUB_Y, 32));
	else
		k->jwk = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "kty", "RSA", "kid", kid, "use", "sig", "alg",
				   "RS256", "n", bn_member(k->pk, OSSL_PKEY_PARAM_RSA_N, 0), "e",
				   bn_member(k->pk, OSSL_PKEY_PARAM_RSA_E, 0));
	assert_non_null(k->jwk);
}

static void key_free(struct tkey *k)
{
	EVP_PKEY_free(k->pk);
	json_decref(k->jwk);
	memset(k, 0, sizeof(*k));
}

/* base64url(header) "." base64url(payload); both JSON objects are stolen. */
static void signing_input(struct buf *b, json_t *hdr, json_t *claims)
{
	char *h = json_dumps(hdr, JSON_COMPACT), *p = json_dumps(claims, JSON_COMPACT);
	char *hb = b64(h, strlen(h)), *pb = b64(p, strlen(p));
	buf_init(b, 1 << 20);
	assert_int_equal(buf_appendf(b, "%s.%s", hb, pb), AL_OK);
	free(h);
	free(p);
	free(hb);
	free(pb);
	json_decref(hdr);
	json_decref(claims);
}

static char *finish(struct buf *b, const unsigned char *sig, size_t len)
{
	char *s = b64(sig, len);
	assert_int_equal(buf_appendf(b, ".%s", s), AL_OK);
	free(s);
	return buf_detach(b);
}

/* A token signed by k with alg RS256 / ES256 (by the key's type). */
static char *sign_with(const struct tkey *k, json_t *hdr, json_t *claims)
{
	struct buf b;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[1024], raw[64];
	size_t len = sizeof(der);
	char *out;

	signing_input(&b, hdr, claims);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pk), 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &len, (unsigned char *)b.ptr, b.len), 1);
	EVP_MD_CTX_free(ctx);
	if (!k->ec)
		return finish(&b, der, len);
	{
		/* JWS wants r || s, 32 bytes each, not DER (RFC 7518 3.4). */
		const unsigned char *p = der;
		ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
		const BIGNUM *r, *s;
		assert_non_null(sig);
		ECDSA_SIG_get0(sig, &r, &s);
		BN_bn2binpad(r, raw, 32);
		BN_bn2binpad(s, raw + 32, 32);
		ECDSA_SIG_free(sig);
		out = finish(&b, raw, 64);
	}
	return out;
}

static char *sign_hs256(const void *secret, size_t secret_len, json_t *hdr, json_t *claims)
{
	struct buf b;
	unsigned char mac[32];
	unsigned int len = sizeof(mac);
	signing_input(&b, hdr, claims);
	assert_non_null(HMAC(EVP_sha256(), secret, (int)secret_len, (unsigned char *)b.ptr, b.len, mac, &len));
	return finish(&b, mac, len);
}

static json_t *hdr_of(const char *alg, const char *kid)
{
	return kid ? json_pack("{s:s, s:s, s:s}", "alg", alg, "typ", "JWT", "kid", kid)
		   : json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
}

static json_t *claims_at(int64_t now)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:{s:[s, s]}, s:{s:{s:[s]}, s:{s:[s]}},"
			 " s:[s, s, s, s, s, s]}",
			 "iss", ISS, "aud", CLIENT, "azp", "airlock-cli", "sub", "0f6c-rita", "typ", "Bearer", "exp",
			 (json_int_t)(now + 300), "iat", (json_int_t)now, "preferred_username", "rita", "realm_access",
			 "roles", "researcher", "offline_access", "resource_access", CLIENT, "roles", "approver",
			 "other-app", "roles", "admin", "groups", "/jupyter-workspaces/gm-research",
			 "/jupyter-workspaces/gm-research", "/jupyter-workspaces/nw-cancer/admins", "/other/ws",
			 "/jupyter-workspaces/Bad_Name", "/jupyter-workspaces/nw-cancer");
}

static json_t *claims_now(void)
{
	return claims_at((int64_t)time(NULL));
}

static char *valid_rs(void)
{
	return sign_with(&rsa_a, hdr_of("RS256", rsa_a.kid), claims_now());
}

static struct jwt_keyset *keyset_of(const struct tkey *k1, const struct tkey *k2)
{
	json_t *doc = json_pack("{s:[]}", "keys");
	struct jwt_keyset *ks = NULL;
	char *text;
	if (k1)
		json_array_append(json_object_get(doc, "keys"), k1->jwk);
	if (k2)
		json_array_append(json_object_get(doc, "keys"), k2->jwk);
	text = json_dumps(doc, JSON_COMPACT);
	assert_int_equal(jwt_keyset_parse(&ks, text, strlen(text)), AL_OK);
	free(text);
	json_decref(doc);
	return ks;
}

static const struct jwt_expect access_expect = { .issuer = ISS, .audience = CLIENT, .typ = "Bearer",
						 .leeway_seconds = 60 };

/* Verifies and checks claims like the provider does; returns the code. */
static int check(const struct jwt_keyset *ks, const char *token, const char *const *algs)
{
	json_t *claims = NULL;
	int rc = jwt_verify(ks, token, algs, &claims);
	if (rc == AL_OK)
		rc = jwt_check_claims(claims, &access_expect, (int64_t)time(NULL));
	json_decref(claims);
	return rc;
}

static int group_setup(void **state)
{
	(void)state;
	json_object_seed(0);
	assert_true(sodium_init() >= 0);
	key_make(&rsa_a, 0, "key-a");
	key_make(&rsa_b, 0, "key-b");
	key_make(&ec_a, 1, "ec-a");
	key_make(&rsa_evil, 0, "evil");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	key_free(&rsa_a);
	key_free(&rsa_b);
	key_free(&ec_a);
	key_free(&rsa_evil);
	return 0;
}

/* ---- jwt: signatures and key selection ------------------------------------------ */

static void test_valid_tokens(void **state)
{
	struct jwt_keyset *ks = keyset_of(&rsa_a, &ec_a);
	const char *const es_only[] = { "ES256", NULL };
	char *rs = valid_rs(), *es = sign_with(&ec_a, hdr_of("ES256", ec_a.kid), claims_now());
	char *nokid = sign_with(&rsa_a, hdr_of("RS256", NULL), claims_now());
	json_t *claims = NULL;
	(void)state;

	assert_int_equal(jwt_keyset_count(ks), 2);
	assert_true(jwt_looks_like(rs));
	assert_false(jwt_looks_like("alk_0123"));
	assert_false(jwt_looks_like("a.b"));
	assert_false(jwt_looks_like("a.b.c.d"));
	assert_false(jwt_looks_like("a..c"));
	assert_false(jwt_looks_like("a.b.c="));
	assert_int_equal(check(ks, rs, NULL), AL_OK);
	assert_int_equal(check(ks, es, NULL), AL_OK);
	/* No kid: every key that fits the alg is tried. */
	assert_int_equal(check(ks, nokid, NULL), AL_OK);
	/* RS256 is not on an ES256-only list. */
	assert_int_equal(check(ks, rs, es_only), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "RS256 are not accepted"));
	assert_int_equal(check(ks, es, es_only), AL_OK);
	assert_int_equal(jwt_verify(ks, rs, NULL, &claims), AL_OK);
	assert_string_equal(json_string_value(json_object_get(claims, "preferred_username")), "rita");
	json_decref(claims);
	free(rs);
	free(es);
	free(nokid);
	jwt_keyset_unref(ks);
}

static void test_forged_signature(void **state)
{
	struct jwt_keyset *ks = keyset_of(&rsa_a, &ec_a);
	char *good = valid_rs(), *bad, *dot1, *dot2;
	json_t *claims = claims_now();
	struct buf b;
	(void)state;

	/* Another key signed it, claiming our kid. */
	bad = sign_with(&rsa_evil, hdr_of("RS256", rsa_a.kid), json_deep_copy(claims));
	assert_int_equal(check(ks, bad, NULL), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "signature does not verify"));
	free(bad);

	/* The payload changed (admin for rita), the signature kept. */
	json_object_set_new(json_object_get(claims, "realm_access"), "roles", json_pack("[s]", "admin"));
	bad = sign_with(&rsa_evil, hdr_of("RS256", "x"), json_incref(claims));
	dot1 = strchr(good, '.');
	dot2 = strchr(dot1 + 1, '.');
	buf_init(&b, 1 << 20);
	buf_append(&b, good, (size_t)(dot1 - good));
	{
		char *bd1 = strchr(bad, '.'), *bd2 = strchr(bd1 + 1, '.');
		buf_append(&b, bd1, (size_t)(bd2 - bd1));
	}
	buf_appends(&b, dot2);
	assert_int_equal(check(ks, b.ptr, NULL), AL_ERR_UNAUTHORIZED);
	buf_free(&b);
	free(bad);

	/* One flipped bit in the signature. */
	bad = util_strdup(good);
	bad[strlen(bad) - 5] = bad[strlen(bad) - 5] == 'A' ? 'B' : 'A';
	assert_int_equal(check(ks, bad, NULL), AL_ERR_UNAUTHORIZED);
	free(bad);
	/* A signature cut short. */
	bad = util_strdup(good);
	bad[strlen(bad) - 4] = '\0';
	assert_int_equal(check(ks, bad, NULL), AL_ERR_UNAUTHORIZED);
	free(bad);
	/* ES256 header on an RSA signature, and an RS kid with an ES alg. */
	bad = sign_with(&rsa_a, hdr_of("ES256", rsa_a.kid), claims_now());
	assert_int_equal(check(ks, bad, NULL), AL_ERR_UNAUTHORIZED);
	free(bad);
	json_decref(claims);
	free(good);
	jwt_keyset_unref(ks);
}

static void test_alg_none_and_hs(void **state)
{
	struct jwt_keyset *ks = keyset_of(&rsa_a, NULL);
	const char *const lenient[] = { "RS256", "HS256", "none", NULL };
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL, *t;
	long pem_len;
	struct buf b;
	const char *n;
	(void)state;

	/* alg none with any signature part. */
	signing_input(&b, hdr_of("none", rsa_a.kid), claims_now());
	assert_int_equal(buf_appends(&b, ".AAAA"), AL_OK);
	assert_int_equal(check(ks, b.ptr, lenient), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "alg none"));
	buf_free(&b);
	signing_input(&b, hdr_of("NoNe", rsa_a.kid), claims_now());
	assert_int_equal(buf_appends(&b, ".AAAA"), AL_OK);
	assert_int_equal(check(ks, b.ptr, lenient), AL_ERR_UNAUTHORIZED);
	buf_free(&b);
	/* ... and with no signature at all: not even the shape of a signed JWT. */
	signing_input(&b, hdr_of("none", rsa_a.kid), claims_now());
	assert_int_equal(buf_appends(&b, "."), AL_OK);
	assert_int_equal(check(ks, b.ptr, lenient), AL_ERR_UNAUTHORIZED);
	buf_free(&b);

	/* HS256 with the RSA public key (PEM, as the classic attack does) as the
	 * secret, and with the JWK's modulus bytes: refused before any key use. */
	assert_int_equal(PEM_write_bio_PUBKEY(bio, rsa_a.pk), 1);
	pem_len = BIO_get_mem_data(bio, &pem);
	t = sign_hs256(pem, (size_t)pem_len, hdr_of("HS256", rsa_a.kid), claims_now());
	assert_int_equal(check(ks, t, lenient), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "shared secret"));
	free(t);
	n = json_string_value(json_object_get(rsa_a.jwk, "n"));
	t = sign_hs256(n, strlen(n), hdr_of("HS256", NULL), claims_now());
	assert_int_equal(check(ks, t, lenient), AL_ERR_UNAUTHORIZED);
	free(t);
	t = sign_hs256(pem, (size_t)pem_len, hdr_of("HS512", rsa_a.kid), claims_now());
	assert_int_equal(check(ks, t, NULL), AL_ERR_UNAUTHORIZED);
	free(t);
	BIO_free(bio);

	/* An oct key in the JWKS is never kept, so it cannot verify HS tokens either. */
	{
		struct jwt_keyset *oct = NULL;
		const char *doc = "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"k\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0\"}]}";
		assert_int_equal(jwt_keyset_parse(&oct, doc, strlen(doc)), AL_OK);
		assert_int_equal(jwt_keyset_count(oct), 0);
		jwt_keyset_unref(oct);
	}
	jwt_keyset_unref(ks);
}

static void test_header_keys_ignored(void **state)
{
	struct jwt_keyset *ks = keyset_of(&rsa_a, NULL);
	json_t *hdr;
	char *t;
	(void)state;

	/* The attacker's key embedded in the header, under the attacker's kid. */
	hdr = hdr_of("RS256", rsa_evil.kid);
	json_object_set(hdr, "jwk", rsa_evil.jwk);
	t = sign_with(&rsa_evil, hdr, claims_now());
	assert_int_equal(check(ks, t, NULL), AL_ERR_NOT_FOUND);
	free(t);
	/* ... under our kid. */
	hdr = hdr_of("RS256", rsa_a.kid);
	json_object_set(hdr, "jwk", rsa_evil.jwk);
	t = sign_with(&rsa_evil, hdr, claims_now());
	assert_int_equal(check(ks, t, NULL), AL_ERR_UNAUTHORIZED);
	free(t);
	/* jku / x5u pointing elsewhere, no kid. */
	hdr = hdr_of("RS256", NULL);
	json_object_set_new(hdr, "jku", json_string("https://evil.test/jwks"));
	json_object_set_new(hdr, "x5u", json_string("https://evil.test/cert.pem"));
	json_object_set_new(hdr, "x5c", json_pack("[s]", "MIIB"));
	t = sign_with(&rsa_evil, hdr, claims_now());
	assert_int_equal(check(ks, t, NULL), AL_ERR_UNAUTHORIZED);
	free(t);
	/* The same headers on a token our key signed do not matter. */
	hdr = hdr_of("RS256", rsa_a.kid);
	json_object_set_new(hdr, "jku", json_string("https://evil.test/jwks"));
	t = sign_with(&rsa_a, hdr, claims_now());
	assert_int_equal(check(ks, t, NULL), AL_OK);
	free(t);
	/* crit: we implement no extension, so refuse. */
	hdr = hdr_of("RS256", rsa_a.kid);
	json_object_set_new(hdr, "crit", json_pack("[s]", "b64"));
	json_object_set_new(hdr, "b64", json_false());
	t = sign_with(&rsa_a, hdr, claims_now());
	assert_int_equal(check(ks, t, NULL), AL_ERR_UNAUTHORIZED);
	free(t);
	jwt_keyset_unref(ks);
}

static void test_malformed(void **state)
{
	struct jwt_keyset *ks = keyset_of(&rsa_a, NULL);
	const char *dup_payload = "{\"iss\":\"" ISS "\",\"sub\":\"a\",\"preferred_username\":\"rita\","
				  "\"preferred_username\":\"admin\",\"aud\":\"airlock\",\"exp\":9999999999}";
	char *t, *p, *h;
	struct buf b;
	(void)state;

	/* Duplicate claim names: two parsers could disagree; refused. */
	h = b64("{\"alg\":\"RS256\",\"kid\":\"key-a\"}", strlen("{\"alg\":\"RS256\",\"kid\":\"key-a\"}"));
	p = b64(dup_payload, strlen(dup_payload));
	buf_init(&b, 1 << 16);
	buf_appendf(&b, "%s.%s", h, p);
	{
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		unsigned char sig[512];
		size_t len = sizeof(sig);
		assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, rsa_a.pk), 1);
		assert_int_equal(EVP_DigestSign(ctx, sig, &len, (unsigned char *)b.ptr, b.len), 1);
		EVP_MD_CTX_free(ctx);
		t = finish(&b, sig, len);
	}
	assert_int_equal(check(ks, t, NULL), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "payload is not a JSON object"));
	free(t);
	free(h);
	free(p);
	/* Not base64url, not JSON, a header that is a list, a kid that is a number. */
	assert_int_equal(check(ks, "e30.e30.e30", NULL), AL_ERR_UNAUTHORIZED);
	assert_int_equal(check(ks, "W10.e30.AAAA", NULL), AL_ERR_UNAUTHORIZED);
	h = b64("{\"alg\":\"RS256\",\"kid\":7}", strlen("{\"alg\":\"RS256\",\"kid\":7}"));
	buf_init(&b, 1 << 16);
	buf_appendf(&b, "%s.e30.AAAA", h);
	assert_int_equal(check(ks, b.ptr, NULL), AL_ERR_UNAUTHORIZED);
	buf_free(&b);
	free(h);
	/* Too long. */
	t = malloc(JWT_MAX_LEN + 10);
	memset(t, 'A', JWT_MAX_LEN + 9);
	t[10] = '.';
	t[20] = '.';
	t[JWT_MAX_LEN + 9] = '\0';
	assert_false(jwt_looks_like(t));
	assert_int_equal(check(ks, t, NULL), AL_ERR_UNAUTHORIZED);
	free(t);
	jwt_keyset_unref(ks);
}

static void test_keyset_parse(void **state)
{
	struct jwt_keyset *ks = NULL;
	json_t *small = json_deep_copy(rsa_a.jwk), *enc = json_deep_copy(rsa_b.jwk), *doc;
	char *text;
	(void)state;

	/* A 512-bit modulus, a key for encryption, a key without kty, an unknown
	 * curve, an alg we do not accept: all skipped; the EC key is kept. */
	json_object_set_new(small, "n", json_string("AQAB"));
	json_object_set_new(enc, "use", json_string("enc"));
	doc = json_pack("{s:[o, o, {s:s}, {s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}, O]}", "keys", small, enc, "kid",
			"x", "kty", "EC", "crv", "P-192", "x", "AA", "y", "AA", "kty", "RSA", "alg", "HS256", "n",
			json_string_value(json_object_get(rsa_a.jwk, "n")), "e", "AQAB", ec_a.jwk);
	text = json_dumps(doc, JSON_COMPACT);
	assert_int_equal(jwt_keyset_parse(&ks, text, strlen(text)), AL_OK);
	assert_int_equal(jwt_keyset_count(ks), 1);
	jwt_keyset_unref(ks);
	free(text);
	json_decref(doc);
	assert_int_equal(jwt_keyset_parse(&ks, "[]", 2), AL_ERR_INVALID);
	assert_null(ks);
	assert_int_equal(jwt_keyset_parse(&ks, "{\"keys\":{}}", 11), AL_ERR_INVALID);
	/* An EC point that is not on the curve. */
	doc = json_deep_copy(ec_a.jwk);
	json_object_set(doc, "y", json_object_get(doc, "x"));
	doc = json_pack("{s:[o]}", "keys", doc);
	text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	assert_int_equal(jwt_keyset_parse(&ks, text, strlen(text)), AL_OK);
	assert_int_equal(jwt_keyset_count(ks), 0);
	jwt_keyset_unref(ks);
	free(text);
}

/* ---- jwt: claims ---------------------------------------------------------------- */

static int claims_rc(json_t *claims, const struct jwt_expect *e, int64_t now)
{
	int rc = jwt_check_claims(claims, e, now);
	json_decref(claims);
	return rc;
}

static void test_claims(void **state)
{
	int64_t now = 1800000000;
	struct jwt_expect e = access_expect;
	json_t *c;
	(void)state;

	assert_int_equal(claims_rc(claims_at(now), &e, now), AL_OK);
	/* Expired: beyond the leeway fails, inside it passes. */
	assert_int_equal(claims_rc(claims_at(now - 361), &e, now), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "expired"));
	assert_int_equal(claims_rc(claims_at(now - 359), &e, now), AL_OK);
	/* No exp at all. */
	c = claims_at(now);
	json_object_del(c, "exp");
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* Not yet valid. */
	c = claims_at(now);
	json_object_set_new(c, "nbf", json_integer(now + 120));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "not valid yet"));
	c = claims_at(now);
	json_object_set_new(c, "nbf", json_integer(now + 30));
	assert_int_equal(claims_rc(c, &e, now), AL_OK);
	/* Issued in the future. */
	c = claims_at(now);
	json_object_set_new(c, "iat", json_integer(now + 120));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* exp not a number, a silly number. */
	c = claims_at(now);
	json_object_set_new(c, "exp", json_string("tomorrow"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	c = claims_at(now);
	json_object_set_new(c, "exp", json_real(1e300));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* Wrong issuer, including a prefix and a trailing slash. */
	c = claims_at(now);
	json_object_set_new(c, "iss", json_string("https://evil.test/realms/airlock"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "not issued by"));
	c = claims_at(now);
	json_object_set_new(c, "iss", json_string(ISS "/"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* Audience: aud names us, or azp does; otherwise refused. */
	c = claims_at(now);
	json_object_set_new(c, "aud", json_pack("[s, s]", "account", CLIENT));
	assert_int_equal(claims_rc(c, &e, now), AL_OK);
	c = claims_at(now);
	json_object_set_new(c, "aud", json_string("account"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "not meant for"));
	c = claims_at(now);
	json_object_set_new(c, "aud", json_string("account"));
	json_object_set_new(c, "azp", json_string(CLIENT));
	assert_int_equal(claims_rc(c, &e, now), AL_OK);
	c = claims_at(now);
	json_object_del(c, "aud");
	json_object_set_new(c, "azp", json_string("other-app"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	c = claims_at(now);
	json_object_set_new(c, "aud", json_integer(3));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* An ID token (typ ID) is not an access token. */
	c = claims_at(now);
	json_object_set_new(c, "typ", json_string("ID"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* No subject. */
	c = claims_at(now);
	json_object_del(c, "sub");
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* A leeway of 0 is exact. */
	e.leeway_seconds = 0;
	assert_int_equal(claims_rc(claims_at(now - 301), &e, now), AL_ERR_UNAUTHORIZED);
	assert_int_equal(claims_rc(claims_at(now - 300), &e, now), AL_OK);
}

static void test_id_token_claims(void **state)
{
	int64_t now = 1800000000;
	struct jwt_expect e = { .issuer = ISS, .audience = CLIENT, .nonce = "n-123", .typ = "ID", .id_token = 1,
				.leeway_seconds = 60 };
	json_t *c;
	(void)state;

#define IDT() json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", ISS, "aud", CLIENT, "sub", "s", "typ", "ID", \
			"exp", (json_int_t)(now + 300), "iat", (json_int_t)now, "nonce", "n-123", "azp", CLIENT)
	assert_int_equal(claims_rc(IDT(), &e, now), AL_OK);
	c = IDT();
	json_object_set_new(c, "nonce", json_string("n-124"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "nonce"));
	c = IDT();
	json_object_del(c, "nonce");
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* azp alone is not enough for an ID token. */
	c = IDT();
	json_object_set_new(c, "aud", json_string("other"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	/* Several audiences: azp must be us. */
	c = IDT();
	json_object_set_new(c, "aud", json_pack("[s, s]", CLIENT, "other"));
	json_object_set_new(c, "azp", json_string("other"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	c = IDT();
	json_object_set_new(c, "aud", json_pack("[s, s]", CLIENT, "other"));
	json_object_del(c, "azp");
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	c = IDT();
	json_object_del(c, "iat");
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
	c = IDT();
	json_object_set_new(c, "typ", json_string("Bearer"));
	assert_int_equal(claims_rc(c, &e, now), AL_ERR_UNAUTHORIZED);
#undef IDT
}

/* ---- oidc: a provider played in memory -------------------------------------------- */

struct fake {
	pthread_mutex_t mu;
	const char *issuer_claimed;
	json_t *jwks;            /* what the certs endpoint serves */
	int disco_calls, jwks_calls, token_calls, fail_jwks;
	long token_status;
	json_t *token_answer;
	char *last_auth, *last_form;
};

static int fake_http(void *ud, const char *url, const char *authorization, const char *form, long *status,
		     struct buf *body)
{
	struct fake *f = ud;
	char *text = NULL;
	json_t *doc = NULL;
	int rc = AL_OK;

	pthread_mutex_lock(&f->mu);
	*status = 200;
	if (!strcmp(url, ISS "/.well-known/openid-configuration")) {
		f->disco_calls++;
		doc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "issuer", f->issuer_claimed, "jwks_uri",
				ISS "/protocol/openid-connect/certs", "authorization_endpoint",
				ISS "/protocol/openid-connect/auth", "token_endpoint", ISS "/protocol/openid-connect/token",
				"end_session_endpoint", ISS "/protocol/openid-connect/logout");
	} else if (!strcmp(url, ISS "/protocol/openid-connect/certs")) {
		f->jwks_calls++;
		if (f->fail_jwks)
			rc = al_error_set(AL_ERR_UNAVAILABLE, "connection refused");
		else
			doc = json_incref(f->jwks);
	} else if (!strcmp(url, ISS "/protocol/openid-connect/token")) {
		f->token_calls++;
		free(f->last_auth);
		free(f->last_form);
		f->last_auth = util_strdup(authorization);
		f->last_form = util_strdup(form);
		*status = f->token_status;
		doc = json_incref(f->token_answer);
	} else {
		*status = 404;
	}
	if (doc) {
		text = json_dumps(doc, JSON_COMPACT);
		buf_appends(body, text);
		free(text);
		json_decref(doc);
	}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

struct ofix {
	struct fake fake;
	struct oidc *o;
	struct airlock_config cfg;
	char secret_path[64];
};

static void serve_keys(struct fake *f, const struct tkey *k1, const struct tkey *k2)
{
	json_t *keys = json_array();
	if (k1)
		json_array_append(keys, k1->jwk);
	if (k2)
		json_array_append(keys, k2->jwk);
	pthread_mutex_lock(&f->mu);
	json_decref(f->jwks);
	f->jwks = json_pack("{s:o}", "keys", keys);
	pthread_mutex_unlock(&f->mu);
}

static int osetup(void **state)
{
	struct ofix *x = calloc(1, sizeof(*x));
	int fd;
	pthread_mutex_init(&x->fake.mu, NULL);
	x->fake.issuer_claimed = ISS;
	serve_keys(&x->fake, &rsa_a, &ec_a);
	assert_int_equal(config_load(&x->cfg, NULL), AL_OK);
	snprintf(x->secret_path, sizeof(x->secret_path), "/tmp/airlock-oidc-XXXXXX");
	fd = mkstemp(x->secret_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s3cret:&+\n", 10), 10);
	close(fd);
	x->cfg.oidc.issuer = util_strdup(ISS);
	x->cfg.oidc.client_id = util_strdup(CLIENT);
	x->cfg.oidc.client_secret_file = util_strdup(x->secret_path);
	assert_int_equal(oidc_open(&x->o, &x->cfg.oidc), AL_OK);
	oidc_set_http(x->o, fake_http, &x->fake);
	*state = x;
	return 0;
}

static int oteardown(void **state)
{
	struct ofix *x = *state;
	oidc_close(x->o);
	config_free(&x->cfg);
	unlink(x->secret_path);
	json_decref(x->fake.jwks);
	json_decref(x->fake.token_answer);
	free(x->fake.last_auth);
	free(x->fake.last_form);
	pthread_mutex_destroy(&x->fake.mu);
	free(x);
	return 0;
}

static void test_oidc_user(void **state)
{
	struct ofix *x = *state;
	json_t *user = NULL, *c;
	char *t = valid_rs(), *dumped;

	assert_int_equal(oidc_authenticate(x->o, t, &user), AL_OK);
	dumped = json_dumps(user, JSON_COMPACT | JSON_SORT_KEYS);
	/* Realm role researcher + client role approver (ours); other-app's admin
	 * and offline_access are not airlock's; workspaces from groups: subgroups,
	 * other trees, invalid names and duplicates left out. */
	assert_string_equal(dumped, "{\"roles\":[\"researcher\",\"approver\"],\"source\":\"oidc\","
				    "\"subject\":\"0f6c-rita\",\"username\":\"rita\","
				    "\"workspaces\":[\"gm-research\",\"nw-cancer\"]}");
	assert_string_equal(json_string_value(json_object_get(user, "username")), "rita");
	assert_int_equal(json_array_size(json_object_get(user, "roles")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(user, "roles"), 0)), "researcher");
	assert_string_equal(json_string_value(json_array_get(json_object_get(user, "roles"), 1)), "approver");
	assert_int_equal(json_array_size(json_object_get(user, "workspaces")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(user, "workspaces"), 0)), "gm-research");
	assert_string_equal(json_string_value(json_array_get(json_object_get(user, "workspaces"), 1)), "nw-cancer");
	assert_string_equal(json_string_value(json_object_get(user, "source")), "oidc");
	free(dumped);
	json_decref(user);
	free(t);
	assert_int_equal(x->fake.disco_calls, 1);
	assert_int_equal(x->fake.jwks_calls, 1);

	/* A role mapping: sde-approver -> approver; researcher no longer mapped. */
	json_decref(x->cfg.oidc.role_mapping);
	x->cfg.oidc.role_mapping = json_pack("{s:s}", "offline_access", "admin");
	oidc_close(x->o);
	assert_int_equal(oidc_open(&x->o, &x->cfg.oidc), AL_OK);
	oidc_set_http(x->o, fake_http, &x->fake);
	c = claims_now();
	assert_int_equal(oidc_user_from_claims(x->o, c, &user), AL_OK);
	assert_int_equal(json_array_size(json_object_get(user, "roles")), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(user, "roles"), 0)), "admin");
	json_decref(user);
	/* A username airlock cannot hold, none at all. */
	json_object_set_new(c, "preferred_username", json_string("Rita Smith"));
	assert_int_equal(oidc_user_from_claims(x->o, c, &user), AL_ERR_UNAUTHORIZED);
	json_object_del(c, "preferred_username");
	assert_int_equal(oidc_user_from_claims(x->o, c, &user), AL_ERR_UNAUTHORIZED);
	assert_null(user);
	json_decref(c);
	/* Not a JWT at all. */
	assert_int_equal(oidc_authenticate(x->o, "alk_00", &user), AL_ERR_UNAUTHORIZED);
}

static void test_oidc_unknown_kid_refetch(void **state)
{
	struct ofix *x = *state;
	json_t *user = NULL;
	char *tb = sign_with(&rsa_b, hdr_of("RS256", rsa_b.kid), claims_now());
	char *tz = sign_with(&rsa_evil, hdr_of("RS256", "made-up"), claims_now());
	char *ta = valid_rs();

	oidc_set_refetch_ms(x->o, 300);
	assert_int_equal(oidc_authenticate(x->o, ta, &user), AL_OK);
	json_decref(user);
	assert_int_equal(x->fake.jwks_calls, 1);
	/* The provider rotates to key-b: a token with the new kid makes us fetch
	 * again (once the rate limit allows) and is accepted. */
	serve_keys(&x->fake, &rsa_b, NULL);
	usleep(350 * 1000);
	assert_int_equal(oidc_authenticate(x->o, tb, &user), AL_OK);
	json_decref(user);
	assert_int_equal(x->fake.jwks_calls, 2);
	/* key-a is gone from the new set. */
	assert_int_equal(oidc_authenticate(x->o, ta, &user), AL_ERR_UNAUTHORIZED);
	/* Made-up kids right after a fetch: no fetch (rate limit), refused. */
	for (int i = 0; i < 20; i++)
		assert_int_equal(oidc_authenticate(x->o, tz, &user), AL_ERR_UNAUTHORIZED);
	assert_int_equal(x->fake.jwks_calls, 2);
	assert_non_null(strstr(al_error_message(), "does not publish"));
	/* After the interval one more fetch is allowed; the provider being down
	 * then keeps the keys we had. */
	usleep(350 * 1000);
	x->fake.fail_jwks = 1;
	assert_int_equal(oidc_authenticate(x->o, tz, &user), AL_ERR_UNAUTHORIZED);
	assert_int_equal(x->fake.jwks_calls, 3);
	assert_int_equal(oidc_authenticate(x->o, tb, &user), AL_OK);
	json_decref(user);
	free(ta);
	free(tb);
	free(tz);
}

static void test_oidc_provider_down(void **state)
{
	struct ofix *x = *state;
	json_t *user = NULL;
	char *t = valid_rs();

	x->fake.fail_jwks = 1;
	assert_int_equal(oidc_authenticate(x->o, t, &user), AL_ERR_UNAVAILABLE);
	/* Retried only after OIDC_RETRY_MS, not per request. */
	assert_int_equal(oidc_authenticate(x->o, t, &user), AL_ERR_UNAVAILABLE);
	assert_int_equal(x->fake.jwks_calls, 1);
	assert_null(user);
	free(t);
}

static void test_oidc_issuer_mismatch(void **state)
{
	struct ofix *x = *state;
	json_t *user = NULL;
	char *t = valid_rs(), *url = NULL;

	x->fake.issuer_claimed = "https://kc.test/realms/other";
	assert_int_equal(oidc_prefetch(x->o), AL_ERR_UNAVAILABLE);
	assert_non_null(strstr(al_error_message(), "calls itself"));
	assert_int_equal(oidc_authenticate(x->o, t, &user), AL_ERR_UNAVAILABLE);
	assert_int_equal(oidc_logout_url(x->o, NULL, NULL, &url), AL_ERR_UNAVAILABLE);
	assert_null(url);
	free(t);
}

static void test_oidc_open_checks(void **state)
{
	struct ofix *x = *state;
	struct oidc *o = NULL;
	struct config_oidc c = x->cfg.oidc;

	c.issuer = "http://kc.example/realms/airlock"; /* plain http to another host */
	assert_int_equal(oidc_open(&o, &c), AL_ERR_INVALID);
	c.issuer = "http://user@127.0.0.1:8080/realms/x";
	assert_int_equal(oidc_open(&o, &c), AL_ERR_INVALID);
	c.issuer = "http://127.0.0.1:8080/realms/airlock";
	assert_int_equal(oidc_open(&o, &c), AL_OK);
	oidc_close(o);
	c.issuer = "http://localhost:8080/realms/airlock";
	assert_int_equal(oidc_open(&o, &c), AL_OK);
	oidc_close(o);
	c.issuer = "http://[::1]/realms/airlock";
	assert_int_equal(oidc_open(&o, &c), AL_OK);
	oidc_close(o);
	c.issuer = "http://[::1]:8080/realms/airlock";
	assert_int_equal(oidc_open(&o, &c), AL_OK);
	oidc_close(o);
	c.issuer = "http://127.0.0.1.evil.test/realms/airlock";
	assert_int_equal(oidc_open(&o, &c), AL_ERR_INVALID);
	c.issuer = "http://localhost.evil.test/realms/airlock";
	assert_int_equal(oidc_open(&o, &c), AL_ERR_INVALID);
	c.issuer = ISS;
	c.client_secret_file = "/nonexistent/secret";
	assert_true(oidc_open(&o, &c) < 0);
	assert_non_null(strstr(al_error_message(), "oidc.clientSecretFile"));
	assert_null(o);
}

static void test_login_flow(void **state)
{
	struct ofix *x = *state;
	struct oidc_login l;
	struct oidc_tokens t;
	unsigned char digest[32];
	char *challenge, *at, *idt, *url = NULL;
	json_t *idc;
	int64_t now = (int64_t)time(NULL);

	assert_int_equal(oidc_login_start(x->o, "http://127.0.0.1:8080/oidc/callback", NULL, &l), AL_OK);
	assert_int_equal(strlen(l.state), 43);
	assert_int_equal(strlen(l.code_verifier), 43);
	assert_string_not_equal(l.state, l.nonce);
	crypto_hash_sha256(digest, (unsigned char *)l.code_verifier, strlen(l.code_verifier));
	challenge = b64(digest, 32);
	assert_non_null(strstr(l.url, ISS "/protocol/openid-connect/auth?response_type=code&client_id=airlock&"
				      "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Foidc%2Fcallback&scope=openid&state="));
	assert_non_null(strstr(l.url, challenge));
	assert_non_null(strstr(l.url, "&code_challenge_method=S256"));
	assert_null(strstr(l.url, l.code_verifier)); /* the verifier stays here */
	assert_true(oidc_state_equal(l.state, l.state));
	assert_false(oidc_state_equal(l.state, l.nonce));
	assert_false(oidc_state_equal(l.state, NULL));
	free(challenge);

	/* The provider's answer: an ID token with our nonce and an access token. */
	at = valid_rs();
	idc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "iss", ISS, "aud", CLIENT, "azp", CLIENT, "sub",
			"0f6c-rita", "typ", "ID", "exp", (json_int_t)(now + 300), "iat", (json_int_t)now, "nonce",
			l.nonce);
	idt = sign_with(&ec_a, hdr_of("ES256", ec_a.kid), json_deep_copy(idc));
	x->fake.token_status = 200;
	x->fake.token_answer = json_pack("{s:s, s:s, s:s, s:s, s:i}", "access_token", at, "id_token", idt,
					 "refresh_token", "r-1", "token_type", "Bearer", "expires_in", 300);
	assert_int_equal(oidc_login_finish(x->o, "code-1", "http://127.0.0.1:8080/oidc/callback", l.code_verifier,
					   l.nonce, &t),
			 AL_OK);
	assert_string_equal(json_string_value(json_object_get(t.user, "username")), "rita");
	assert_string_equal(t.id_token, idt);
	assert_string_equal(t.refresh_token, "r-1");
	assert_true(t.expires_at >= now + 299);
	/* client_secret_basic of "airlock" : form-encoded "s3cret:&+". */
	{
		char expect[128];
		const char *cred = "airlock:s3cret%3A%26%2B";
		char b64o[96];
		sodium_bin2base64(b64o, sizeof(b64o), (const unsigned char *)cred, strlen(cred),
				  sodium_base64_VARIANT_ORIGINAL);
		snprintf(expect, sizeof(expect), "Basic %s", b64o);
		assert_string_equal(x->fake.last_auth, expect);
	}
	assert_non_null(strstr(x->fake.last_form, "grant_type=authorization_code&code=code-1&redirect_uri="));
	assert_non_null(strstr(x->fake.last_form, l.code_verifier));
	oidc_tokens_free(&t);

	/* A different nonce (a replayed ID token) fails. */
	assert_int_equal(oidc_login_finish(x->o, "code-1", "http://127.0.0.1:8080/oidc/callback", l.code_verifier,
					   "other-nonce", &t),
			 AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "nonce"));
	assert_null(t.access_token);
	/* The provider refuses the code. */
	x->fake.token_status = 400;
	json_decref(x->fake.token_answer);
	x->fake.token_answer = json_pack("{s:s, s:s}", "error", "invalid_grant", "error_description", "Code not valid");
	assert_int_equal(oidc_login_finish(x->o, "code-2", "http://127.0.0.1:8080/oidc/callback", l.code_verifier,
					   l.nonce, &t),
			 AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "invalid_grant"));
	/* An ID token for another subject than the access token. */
	json_object_set_new(idc, "sub", json_string("someone-else"));
	free(idt);
	idt = sign_with(&ec_a, hdr_of("ES256", ec_a.kid), json_incref(idc));
	x->fake.token_status = 200;
	json_decref(x->fake.token_answer);
	x->fake.token_answer = json_pack("{s:s, s:s, s:s}", "access_token", at, "id_token", idt, "token_type", "bearer");
	assert_int_equal(oidc_login_finish(x->o, "code-3", "http://127.0.0.1:8080/oidc/callback", l.code_verifier,
					   l.nonce, &t),
			 AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "different users"));

	assert_int_equal(oidc_logout_url(x->o, idt, "http://127.0.0.1:8080/", &url), AL_OK);
	assert_non_null(strstr(url, ISS "/protocol/openid-connect/logout?client_id=airlock&id_token_hint="));
	assert_non_null(strstr(url, "&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2F"));
	free(url);
	json_decref(idc);
	free(at);
	free(idt);
	oidc_login_free(&l);
}

static void test_refresh(void **state)
{
	struct ofix *x = *state;
	struct oidc_tokens t;
	char *at = valid_rs(), *idt;
	json_t *idc, *c;
	int64_t now = (int64_t)time(NULL);

	/* A refreshed ID token without a nonce, a new refresh token, and
	 * Keycloak's refresh_expires_in. */
	idc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss", ISS, "aud", CLIENT, "azp", CLIENT, "sub",
			"0f6c-rita", "typ", "ID", "exp", (json_int_t)(now + 300), "iat", (json_int_t)now);
	idt = sign_with(&ec_a, hdr_of("ES256", ec_a.kid), json_deep_copy(idc));
	x->fake.token_status = 200;
	x->fake.token_answer = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "access_token", at, "id_token", idt,
					 "refresh_token", "r-2", "token_type", "Bearer", "expires_in", 300,
					 "refresh_expires_in", 1800);
	assert_int_equal(oidc_refresh(x->o, "r-1", "0f6c-rita", &t), AL_OK);
	assert_string_equal(json_string_value(json_object_get(t.user, "username")), "rita");
	assert_string_equal(t.access_token, at);
	assert_string_equal(t.id_token, idt);
	assert_string_equal(t.refresh_token, "r-2");
	assert_true(t.expires_at >= now + 299);
	assert_true(t.refresh_expires_at >= now + 1799 && t.refresh_expires_at <= now + 1801);
	assert_string_equal(x->fake.last_form, "grant_type=refresh_token&refresh_token=r-1&client_id=airlock");
	assert_non_null(strstr(x->fake.last_auth, "Basic "));
	oidc_tokens_free(&t);

	/* The provider may leave out the ID and refresh tokens. */
	json_decref(x->fake.token_answer);
	x->fake.token_answer = json_pack("{s:s, s:s}", "access_token", at, "token_type", "Bearer");
	assert_int_equal(oidc_refresh(x->o, "r-2", "0f6c-rita", &t), AL_OK);
	assert_null(t.id_token);
	assert_null(t.refresh_token);
	assert_int_equal(t.refresh_expires_at, 0);
	oidc_tokens_free(&t);

	/* Another person than the session's: refused. */
	assert_int_equal(oidc_refresh(x->o, "r-2", "someone-else", &t), AL_ERR_UNAUTHORIZED);
	assert_null(t.user);
	/* An ID token of another subject than the access token: refused. */
	json_object_set_new(idc, "sub", json_string("someone-else"));
	free(idt);
	idt = sign_with(&ec_a, hdr_of("ES256", ec_a.kid), json_incref(idc));
	json_decref(x->fake.token_answer);
	x->fake.token_answer = json_pack("{s:s, s:s, s:s}", "access_token", at, "id_token", idt, "token_type", "Bearer");
	assert_int_equal(oidc_refresh(x->o, "r-2", "0f6c-rita", &t), AL_ERR_UNAUTHORIZED);
	/* A forged access token: refused. */
	c = claims_now();
	free(at);
	at = sign_with(&rsa_evil, hdr_of("RS256", rsa_a.kid), c);
	json_decref(x->fake.token_answer);
	x->fake.token_answer = json_pack("{s:s, s:s}", "access_token", at, "token_type", "Bearer");
	assert_int_equal(oidc_refresh(x->o, "r-2", "0f6c-rita", &t), AL_ERR_UNAUTHORIZED);

	/* Keycloak ended the session: invalid_grant is UNAUTHORIZED, and the
	 * message names it but repeats nothing else of the answer. */
	x->fake.token_status = 400;
	json_decref(x->fake.token_answer);
	x->fake.token_answer = json_pack("{s:s, s:s}", "error", "invalid_grant", "error_description",
					 "Session not active <r-2>");
	assert_int_equal(oidc_refresh(x->o, "r-2", "0f6c-rita", &t), AL_ERR_UNAUTHORIZED);
	assert_non_null(strstr(al_error_message(), "refused the refresh (400, invalid_grant)"));
	assert_null(strstr(al_error_message(), "r-2"));
	/* Keycloak is down or failing: UNAVAILABLE, nothing decided. */
	x->fake.token_status = 503;
	assert_int_equal(oidc_refresh(x->o, "r-2", "0f6c-rita", &t), AL_ERR_UNAVAILABLE);
	/* No refresh token or subject: nothing is sent. */
	x->fake.token_calls = 0;
	assert_int_equal(oidc_refresh(x->o, NULL, "0f6c-rita", &t), AL_ERR_INVALID);
	assert_int_equal(oidc_refresh(x->o, "r-2", "", &t), AL_ERR_INVALID);
	assert_int_equal(x->fake.token_calls, 0);

	json_decref(idc);
	free(at);
	free(idt);
}

struct worker {
	struct oidc *o;
	const char *good, *bad;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 200; i++) {
		json_t *user = NULL;
		if (oidc_authenticate(w->o, w->good, &user) != AL_OK)
			w->failures++;
		json_decref(user);
		if (i % 10 == 0 && oidc_authenticate(w->o, w->bad, &user) != AL_ERR_UNAUTHORIZED)
			w->failures++;
	}
	return NULL;
}

static void test_oidc_concurrent(void **state)
{
	struct ofix *x = *state;
	pthread_t th[4];
	struct worker w[4];
	char *good = valid_rs(), *bad = sign_with(&rsa_evil, hdr_of("RS256", "nope"), claims_now());

	oidc_set_refetch_ms(x->o, 1);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ x->o, good, bad, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	assert_int_equal(x->fake.disco_calls, 1);
	free(good);
	free(bad);
}

/* ---- config ------------------------------------------------------------------- */

static int load_yaml(struct airlock_config *cfg, const char *yaml)
{
	char path[] = "/tmp/airlock-oidc-cfg-XXXXXX";
	int fd = mkstemp(path), rc;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
	close(fd);
	rc = config_load(cfg, path);
	unlink(path);
	return rc;
}

static void test_config(void **state)
{
	struct airlock_config cfg;
	(void)state;

	assert_int_equal(load_yaml(&cfg, "listen: 127.0.0.1:0\n"), AL_OK);
	assert_null(cfg.oidc.issuer);
	assert_int_equal(cfg.oidc.leeway_seconds, 60);
	assert_int_equal(json_array_size(cfg.oidc.algorithms), 2);
	assert_string_equal(cfg.oidc.workspace_group_prefix, "/jupyter-workspaces/");
	config_free(&cfg);

	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: airlock\n  algorithms: [ES256]\n"
					 "  roleMapping: {sde-approver: approver}\n  leewaySeconds: 5\n"
					 "  groupsClaim: grp\n  workspaceGroupPrefix: /ws/\n  clientSecretFile: s.txt\n"),
			 AL_OK);
	assert_string_equal(cfg.oidc.issuer, ISS);
	assert_string_equal(cfg.oidc.client_id, "airlock");
	assert_int_equal(cfg.oidc.leeway_seconds, 5);
	assert_string_equal(json_string_value(json_object_get(cfg.oidc.role_mapping, "sde-approver")), "approver");
	assert_null(json_object_get(cfg.oidc.role_mapping, "researcher"));
	assert_true(cfg.oidc.client_secret_file[0] == '/');
	config_free(&cfg);

	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  algorithms: [RS256, HS256]\n"),
			 AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "HS256 is never accepted"));
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  algorithms: [none]\n"),
			 AL_ERR_INVALID);
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  algorithms: [RSA-OAEP]\n"),
			 AL_ERR_INVALID);
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n"), AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "clientId"));
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: ftp://x\n  clientId: a\n"), AL_ERR_INVALID);
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  roleMapping: {x: root}\n"),
			 AL_ERR_INVALID);
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  leewaySeconds: 3600\n"),
			 AL_ERR_INVALID);
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  clientSecret: x\n"),
			 AL_ERR_INVALID);
	assert_non_null(strstr(al_error_message(), "oidc.clientSecret: unknown setting"));
	assert_int_equal(load_yaml(&cfg, "oidc:\n  issuer: " ISS "\n  clientId: a\n  workspaceGroupPrefix: /ws\n"),
			 AL_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_tokens),
		cmocka_unit_test(test_forged_signature),
		cmocka_unit_test(test_alg_none_and_hs),
		cmocka_unit_test(test_header_keys_ignored),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_keyset_parse),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_id_token_claims),
		cmocka_unit_test_setup_teardown(test_oidc_user, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_oidc_unknown_kid_refetch, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_oidc_provider_down, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_oidc_issuer_mismatch, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_oidc_open_checks, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_login_flow, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_refresh, osetup, oteardown),
		cmocka_unit_test_setup_teardown(test_oidc_concurrent, osetup, oteardown),
		cmocka_unit_test(test_config),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
