/* See sha256_run.h for why the deprecated low-level API. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "uploader/sha256_run.h"

#include "common/error.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(SHA256_CTX) <= sizeof(((struct sha256_run *)0)->ctx), "SHA256_CTX does not fit");

static SHA256_CTX *ctx_of(struct sha256_run *r)
{
	return (SHA256_CTX *)(void *)r->ctx;
}

void sha256_run_init(struct sha256_run *r)
{
	memset(r, 0, sizeof(*r));
	SHA256_Init(ctx_of(r));
}

void sha256_run_update(struct sha256_run *r, const void *data, size_t len)
{
	if (len == 0)
		return;
	SHA256_Update(ctx_of(r), data, len);
	r->bytes += len;
}

void sha256_run_hex(const struct sha256_run *r, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	struct sha256_run copy = *r;
	unsigned char md[SHA256_DIGEST_LENGTH];

	SHA256_Final(md, ctx_of(&copy));
	for (size_t i = 0; i < sizeof(md); i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

json_t *sha256_run_save(const struct sha256_run *r)
{
	const SHA256_CTX *c = (const SHA256_CTX *)(const void *)r->ctx;
	char h[65];

	/* Between updates, OpenSSL keeps r->bytes % 64 bytes buffered (c->num)
	 * and h[] covers exactly the blocks before them. */
	if ((uint64_t)c->num != r->bytes % 64)
		return NULL;
	for (int i = 0; i < 8; i++)
		snprintf(h + 8 * i, 9, "%08x", (unsigned)c->h[i]);
	return json_pack("{s:s, s:I}", "h", h, "bytes", (json_int_t)(r->bytes - r->bytes % 64));
}

int sha256_run_restore(struct sha256_run *r, const json_t *saved, uint64_t total, const void *tail,
		       size_t tail_len)
{
	const char *h = json_string_value(json_object_get(saved, "h"));
	json_t *jb = json_object_get(saved, "bytes");
	json_int_t bytes = json_integer_value(jb);
	SHA256_CTX *c;
	uint32_t words[8];

	sha256_run_init(r);
	if (!h || strlen(h) != 64 || !json_is_integer(jb) || bytes < 0 || bytes % 64 ||
	    (uint64_t)bytes > total || total - (uint64_t)bytes != tail_len || tail_len >= 64)
		return al_error_set(AL_ERR_INVALID, "the saved SHA-256 state does not fit %llu bytes",
				    (unsigned long long)total);
	for (int i = 0; i < 8; i++) {
		uint32_t w = 0;
		for (int j = 0; j < 8; j++) {
			char ch = h[8 * i + j];
			unsigned d;
			if (ch >= '0' && ch <= '9')
				d = (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				d = (unsigned)(ch - 'a' + 10);
			else
				return al_error_set(AL_ERR_INVALID, "the saved SHA-256 state is not hex");
			w = (w << 4) | d;
		}
		words[i] = w;
	}
	c = ctx_of(r);
	for (int i = 0; i < 8; i++)
		c->h[i] = words[i];
	/* The message length in bits, as the two 32-bit halves OpenSSL keeps. */
	c->Nl = (SHA_LONG)(((uint64_t)bytes << 3) & 0xffffffffu);
	c->Nh = (SHA_LONG)((uint64_t)bytes >> 29);
	c->num = 0;
	r->bytes = (uint64_t)bytes;
	sha256_run_update(r, tail, tail_len);
	return AL_OK;
}
