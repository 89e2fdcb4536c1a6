/*
 * Fuzz target for what an identity provider or a client sends the JWT code
 * (src/auth/jwt.h): the first byte picks the parser, the rest is its input.
 *   0: a JWKS document (jwt_keyset_parse)
 *   1: a compact token (shape check, header peek, base64url, verification
 *      against an empty key set: must never succeed)
 *   2: a claims object checked against fixed expectations (jwt_check_claims)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0] % 3;
	data++;
	size--;
	if (!(text = malloc(size + 1)))
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (mode == 0) {
		struct jwt_keyset *ks = NULL;
		if (jwt_keyset_parse(&ks, text, size) == AL_OK) {
			(void)jwt_keyset_count(ks);
			jwt_keyset_unref(ks);
		}
	} else if (mode == 1) {
		struct jwt_keyset *empty = NULL;
		json_t *hdr = NULL, *claims = NULL;
		unsigned char *raw = NULL;
		size_t raw_len = 0;

		(void)jwt_looks_like(text);
		if (jwt_peek_header(text, &hdr) == AL_OK && !json_is_object(hdr))
			__builtin_trap();
		json_decref(hdr);
		if (jwt_b64url_decode(text, size, &raw, &raw_len) == AL_OK) {
			char *again = NULL;
			if (raw[raw_len] != '\0')
				__builtin_trap(); /* the promised NUL */
			if (jwt_b64url_encode(raw, raw_len, &again) == AL_OK)
				free(again);
			free(raw);
		}
		if (jwt_keyset_parse(&empty, "{\"keys\":[]}", 11) == AL_OK) {
			if (jwt_verify(empty, text, NULL, &claims) == AL_OK)
				__builtin_trap(); /* no key, no valid token */
			json_decref(claims);
			jwt_keyset_unref(empty);
		}
	} else {
		json_error_t err;
		json_t *claims = json_loadb(text, size, JSON_REJECT_DUPLICATES, &err);
		struct jwt_expect want = { .issuer = "https://idp.example/realms/airlock", .audience = "airlock",
					   .leeway_seconds = 30 };
		if (claims) {
			(void)jwt_check_claims(claims, &want, 1700000000);
			want.id_token = 1;
			want.nonce = "n0nce";
			(void)jwt_check_claims(claims, &want, 1700000000);
			json_decref(claims);
		}
	}
	al_error_clear();
	free(text);
	return 0;
}
