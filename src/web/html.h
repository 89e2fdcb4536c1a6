/*
 * html.h - HTML escaping, a small escaping formatter for server-rendered
 * pages, and the parsing of HTML form bodies.
 *
 * What it promises:
 *  - html_text / html_attr make any byte string safe to place in HTML text
 *    or inside a double-quoted attribute value: & < > " ' (and ` in
 *    attributes) become character references, so a value can never open a
 *    tag, close an attribute or start a script. Invalid UTF-8 (overlong
 *    forms, surrogates, truncated sequences, bytes over U+10FFFF) and
 *    control characters other than tab, LF and CR become U+FFFD, so what is
 *    sent is always valid UTF-8 and a browser cannot be talked into another
 *    decoding.
 *  - html_fmt escapes every %s argument by itself: raw markup needs %R,
 *    which is spelled out at the call site and used only for markup built by
 *    this module's callers. That makes "forgot to escape" the unusual case.
 *  - html_form_parse reads application/x-www-form-urlencoded bodies strictly:
 *    bad percent escapes, NUL bytes, invalid UTF-8 and repeated field names
 *    are refused (AL_ERR_INVALID), so one field cannot mean two things.
 *
 * Ownership: output goes to a caller's struct buf (bounded by its max);
 * json_t ** outputs are new references owned by the caller.
 */
#ifndef AL_WEB_HTML_H
#define AL_WEB_HTML_H

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>

#include "common/buf.h"

/* Escaped text for an element's content. s NULL appends nothing. */
int html_text(struct buf *b, const char *s);
/* The same for the first len bytes of s (which may hold any bytes). */
int html_text_n(struct buf *b, const char *s, size_t len);
/* Escaped value for a double-quoted attribute: attr="...". */
int html_attr(struct buf *b, const char *s);

/* Percent-encodes s for one URL path segment or query value (RFC 3986
 * unreserved characters stay), e.g. to build href="/workspaces/%U". The
 * result needs no further escaping in an attribute. */
int html_url_segment(struct buf *b, const char *s);

/* 1 if s[0..len) is valid UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF), else 0. */
int html_utf8_valid(const char *s, size_t len);

/* Appends fmt with these conversions (no flags or widths):
 *   %s  const char *, HTML-escaped (html_text; NULL prints nothing)
 *   %U  const char *, percent-encoded path segment (html_url_segment)
 *   %R  const char *, raw markup, appended as is (NULL prints nothing)
 *   %d  int        %z  size_t        %j  long long
 *   %%  a '%'
 * Any other conversion is a bug: AL_ERR_INTERNAL, nothing more appended.
 * Arguments are not checked by the compiler: keep calls simple. */
int html_fmt(struct buf *b, const char *fmt, ...);
int html_vfmt(struct buf *b, const char *fmt, va_list ap);

/* Parses an application/x-www-form-urlencoded body ("a=1&b=x+y") into a
 * JSON object of strings. Empty body: an empty object. *out is NULL on
 * error. */
int html_form_parse(const char *body, size_t len, json_t **out);

#endif
