/*
 * curl_dl.h - libcurl, loaded when first needed.
 *
 * One executable does everything, but only some subcommands speak HTTP as a
 * client (the CLI, later the Kubernetes operator). Loading libcurl - and the
 * dozen libraries it pulls in (Kerberos, LDAP, SSH, RTMP ...) - only in those
 * processes keeps `airlock serve` small: its idle memory is about 2 MB less.
 *
 * curl_dl() loads libcurl.so.4 once (thread-safe), runs curl_global_init,
 * and returns its functions; NULL with a message (AL_ERR_UNAVAILABLE) if the
 * library cannot be loaded. The pointers have libcurl's own signatures and
 * semantics; the header's types and constants come from <curl/curl.h>.
 */
#ifndef AL_NET_CURL_DL_H
#define AL_NET_CURL_DL_H

#include <curl/curl.h>

struct curl_dl {
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
	CURLcode (*easy_perform)(CURL *curl);
	CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *curl);
	const char *(*easy_strerror)(CURLcode code);
	char *(*easy_escape)(CURL *curl, const char *string, int length);
	void (*free)(void *p);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *string);
	void (*slist_free_all)(struct curl_slist *list);
	/* Clears a handle's options but keeps its live connections (src/kube's
	 * handle pool). */
	void (*easy_reset)(CURL *curl);
};

const struct curl_dl *curl_dl(void);

#endif
