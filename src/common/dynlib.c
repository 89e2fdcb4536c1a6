#include "common/dynlib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int dynlib_function(void *handle, const char *label, const char *symbol, void *fn, char *why, size_t why_len)
{
	void *sym = dlsym(handle, symbol);

	if (!sym) {
		snprintf(why, why_len, "%s lacks %s", label, symbol);
		return -1;
	}
	/* dlsym returns void *; converting it to a function pointer is what
	 * POSIX requires dlsym to support (both have the same size there). */
	memcpy(fn, &sym, sizeof(sym));
	return 0;
}

void *dynlib_open(const char *soname, const char *label, const struct dynlib_symbol *syms, size_t n, void *table,
		  char *why, size_t why_len)
{
	void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	size_t i;

	if (!handle) {
		const char *err = dlerror();
		snprintf(why, why_len, "%s", err ? err : soname);
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (dynlib_function(handle, label, syms[i].name, (char *)table + syms[i].offset, why, why_len))
			return NULL; /* the handle stays open: harmless, and dlclose could unmap code still referenced */
	return handle;
}
