/*
 * sha256_run.h - a SHA-256 that can be stopped and carried on later, in
 * another process: the uploader hashes a file while its bytes stream in, over
 * many requests and across restarts of the server.
 *
 * The saved form is the hash's chaining value after the last whole 64-byte
 * block, and how many bytes that covers (a multiple of 64): {"h": "<64 hex>",
 * "bytes": N}. The bytes after it (fewer than 64) are not saved: whoever
 * restores the state replays them from the data itself, which is on disk
 * anyway. This relies only on SHA-256 as the standard defines it (FIPS 180-4:
 * the state between blocks is eight 32-bit words), not on any library's
 * memory layout, so a state saved by one build restores in another.
 *
 * The computation is OpenSSL's (SHA-NI / AVX2 where the CPU has them). OpenSSL
 * 3 deprecates its low-level SHA256_* calls, but EVP offers no way to export
 * or import a running state; this module is the one place that uses them.
 */
#ifndef AL_UPLOADER_SHA256_RUN_H
#define AL_UPLOADER_SHA256_RUN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Plain data: copy it with '=' (for instance to roll back a chunk). */
struct sha256_run {
	_Alignas(16) unsigned char ctx[128]; /* OpenSSL's SHA256_CTX */
	uint64_t bytes;                      /* bytes hashed so far */
};

void sha256_run_init(struct sha256_run *r);
void sha256_run_update(struct sha256_run *r, const void *data, size_t len);
/* The digest of everything so far, as lower-case hex; r is left as it was
 * (more bytes may follow). out must hold 65 bytes. */
void sha256_run_hex(const struct sha256_run *r, char out[65]);

/* The saved form described above (a new object; NULL when out of memory).
 * Bytes after the saved part: r->bytes % 64. */
json_t *sha256_run_save(const struct sha256_run *r);
/* Restores a state saved by sha256_run_save that went on to cover `total`
 * bytes: `tail` must be the last total % 64 of them (tail_len equal to that).
 * AL_ERR_INVALID when `saved` is malformed or does not fit `total`; r is
 * then left initialised (empty). */
int sha256_run_restore(struct sha256_run *r, const json_t *saved, uint64_t total, const void *tail,
		       size_t tail_len);

#endif
