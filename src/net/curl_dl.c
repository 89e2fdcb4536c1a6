#include "net/curl_dl.h"
#include "common/dynlib.h"
#include "common/error.h"

#include <pthread.h>
#include <stdio.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct curl_dl api;
static int loaded;
static char load_error[256];

static const struct dynlib_symbol symbols[] = {
	DYNLIB_SYMBOL(struct curl_dl, easy_init, "curl_easy_init"),
	DYNLIB_SYMBOL(struct curl_dl, easy_setopt, "curl_easy_setopt"),
	DYNLIB_SYMBOL(struct curl_dl, easy_perform, "curl_easy_perform"),
	DYNLIB_SYMBOL(struct curl_dl, easy_getinfo, "curl_easy_getinfo"),
	DYNLIB_SYMBOL(struct curl_dl, easy_cleanup, "curl_easy_cleanup"),
	DYNLIB_SYMBOL(struct curl_dl, easy_strerror, "curl_easy_strerror"),
	DYNLIB_SYMBOL(struct curl_dl, easy_escape, "curl_easy_escape"),
	DYNLIB_SYMBOL(struct curl_dl, free, "curl_free"),
	DYNLIB_SYMBOL(struct curl_dl, slist_append, "curl_slist_append"),
	DYNLIB_SYMBOL(struct curl_dl, slist_free_all, "curl_slist_free_all"),
	DYNLIB_SYMBOL(struct curl_dl, easy_reset, "curl_easy_reset"),
};

static void load(void)
{
	CURLcode (*global_init)(long) = NULL;
	void *handle = dynlib_open("libcurl.so.4", "libcurl", symbols, sizeof(symbols) / sizeof(symbols[0]), &api, load_error,
				   sizeof(load_error));

	if (!handle)
		return;
	if (dynlib_function(handle, "libcurl", "curl_global_init", &global_init, load_error, sizeof(load_error)))
		return;
	if (global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(load_error, sizeof(load_error), "curl_global_init failed");
		return;
	}
	loaded = 1;
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
