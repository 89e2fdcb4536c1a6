/*
 * Fuzz target for audit export lines: splits the input into lines, parses
 * each with audit_parse_line and feeds the good ones to one verifier, the
 * path `airlock audit verify` takes over an untrusted export file.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "audit/audit.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit_verifier v;
	const char *p = (const char *)data, *end = p + size;
	json_t *all = json_array();

	audit_verifier_init(&v);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *rec = NULL;

		if (audit_parse_line(p, len, &rec) == AL_OK) {
			char h[UTIL_SHA256_HEX_LEN + 1];
			/* Keep feeding after a failure: the verifier must stay sane. */
			(void)audit_verifier_feed(&v, rec);
			(void)audit_hash(rec, h);
			if (all)
				json_array_append(all, rec);
			json_decref(rec);
		} else if (rec) {
			__builtin_trap(); /* an error must leave *out NULL */
		}
		p += len + (nl ? 1 : 0);
	}
	if (all) {
		uint64_t n = 0;
		(void)audit_verify_records(all, &n);
		if (n > json_array_size(all))
			__builtin_trap();
		json_decref(all);
	}
	return 0;
}
