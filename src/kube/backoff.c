/*
 * backoff.c - retry delays: exponential growth, a cap, and full jitter
 * (a uniformly random delay in [0, computed]), so that many clients failing
 * together do not retry together.
 */
#include "kube/kube.h"

#include <sodium.h>

int kube_backoff_ms(int attempt, int base_ms, int max_ms)
{
	long long computed;

	if (base_ms <= 0 || max_ms <= 0)
		return 0;
	if (attempt < 0)
		attempt = 0;
	computed = base_ms;
	for (int i = 0; i < attempt && computed < max_ms; i++)
		computed *= 2;
	if (computed > max_ms)
		computed = max_ms;
	/* sodium_init is idempotent and thread-safe; randombytes works without it
	 * on Linux, but the documentation asks for it. */
	if (sodium_init() < 0)
		return (int)(computed / 2);
	return (int)randombytes_uniform((uint32_t)computed + 1);
}
