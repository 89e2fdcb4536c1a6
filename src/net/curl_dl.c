#include "net/curl_dl.h"
#include "common/error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct curl_dl api;
static int loaded;
static char load_error[256];

/* dlsym returns void *; converting it to a function pointer is what POSIX
 * requires dlsym to support. */
#define LOAD(field, symbol)                                                      \
	do {                                                                     \
		void *sym_ = dlsym(handle, symbol);                              \
		if (!sym_) {                                                     \
			snprintf(load_error, sizeof(load_error), "libcurl lacks %s", symbol); \
			return;                                                  \
		}                                                                \
		memcpy(&api.field, &sym_, sizeof(sym_));                         \
	} while (0)

static void load(void)
{
	CURLcode (*global_init)(long) = NULL;
	void *handle = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
	void *sym;

	if (!handle) {
		const char *why = dlerror();
		snprintf(load_error, sizeof(load_error), "%s", why ? why : "libcurl.so.4 not found");
		return;
	}
	LOAD(easy_init, "curl_easy_init");
	LOAD(easy_setopt, "curl_easy_setopt");
	LOAD(easy_perform, "curl_easy_perform");
	LOAD(easy_getinfo, "curl_easy_getinfo");
	LOAD(easy_cleanup, "curl_easy_cleanup");
	LOAD(easy_strerror, "curl_easy_strerror");
	LOAD(easy_escape, "curl_easy_escape");
	LOAD(free, "curl_free");
	LOAD(slist_append, "curl_slist_append");
	LOAD(slist_free_all, "curl_slist_free_all");
	LOAD(easy_reset, "curl_easy_reset");
	sym = dlsym(handle, "curl_global_init");
	if (!sym) {
		snprintf(load_error, sizeof(load_error), "libcurl lacks curl_global_init");
		return;
	}
	memcpy(&global_init, &sym, sizeof(sym));
	if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(load_error, sizeof(load_error), "curl_global_init failed");
		return;
	}
	loaded = 1; /* the handle stays open for the life of the process */
}

const struct curl_dl *curl_dl(void)
{
	pthread_once(&load_once, load);
	if (!loaded) {
		al_error_set(AL_ERR_UNAVAILABLE, "cannot load libcurl (%s): install the libcurl4 package", load_error);
		return NULL;
	}
	return &api;
}
