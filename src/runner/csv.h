/*
 * csv.h - RFC 4180 CSV: a streaming writer and a streaming record counter.
 *
 * The writer promises:
 *   - records end with CRLF, fields are separated by ',';
 *   - a field is quoted when it contains ',', '"', CR or LF; quotes inside a
 *     quoted field are doubled;
 *   - NULL is an empty unquoted field, the empty string is "" (so the two stay
 *     distinguishable, as PostgreSQL's CSV COPY does; readers that do not care
 *     see both as empty);
 *   - text must be valid UTF-8 (csv_writer_text refuses anything else);
 *   - BLOBs are written as standard base64 (RFC 4648, '+/' alphabet, '='
 *     padding, no line breaks), which never needs quoting; an empty BLOB is
 *     "" (like the empty string), so it is not taken for NULL;
 *   - memory is one fixed output buffer whatever the data size: the buffer is
 *     flushed with write(2) when full, and fields larger than it are streamed.
 *
 * The counter reads a CSV byte stream in arbitrary chunks and counts records
 * the way an RFC 4180 reader does: CR, LF and CRLF end a record only outside a
 * quoted field; a last record without a line end still counts. It also captures
 * the first record's fields (the header) when they are valid UTF-8.
 */
#ifndef AL_RUNNER_CSV_H
#define AL_RUNNER_CSV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CSV_WRITER_DEFAULT_BUFFER ((size_t)256 << 10)
#define CSV_HEADER_MAX_BYTES ((size_t)1 << 20)
#define CSV_HEADER_MAX_COLUMNS 10000

struct csv_writer {
	int fd;           /* borrowed; never closed by the writer */
	char *buf;
	size_t len;
	size_t cap;
	uint64_t written; /* bytes handed to write(2) so far (compressed, with gzip) */
	int mid_record;   /* a field was written in the current record */
	void *z;          /* zlib stream when writing gzip, else NULL */
	char *zbuf;       /* its output buffer */
	size_t zcap;
	void *sha;        /* SHA-256 of every byte written (EVP_MD_CTX) */
};

/* cap 0 means CSV_WRITER_DEFAULT_BUFFER. */
int csv_writer_init(struct csv_writer *w, int fd, size_t cap);
/* The same, writing one gzip member (RFC 1952, zlib level 6): memory is
 * the buffer plus zlib's fixed ~256 KiB. End with csv_writer_finish. */
int csv_writer_init_gzip(struct csv_writer *w, int fd, size_t cap);
void csv_writer_free(struct csv_writer *w);
/* Writes out everything, and for gzip the stream's end: after it the
 * file is complete (but not yet fsynced). */
int csv_writer_finish(struct csv_writer *w);
/* After csv_writer_finish: the lower-case hex SHA-256 of the bytes written
 * (what the file holds), so nobody needs to read it again. out: 65 bytes. */
int csv_writer_digest(struct csv_writer *w, char out[65]);
/* A text field; AL_ERR_INVALID naming the byte offset when not valid UTF-8
 * (nothing is written then). */
int csv_writer_text(struct csv_writer *w, const char *s, size_t n);
/* A field the caller knows needs no quoting and is ASCII (numbers). */
int csv_writer_plain(struct csv_writer *w, const char *s, size_t n);
int csv_writer_null(struct csv_writer *w);
int csv_writer_int64(struct csv_writer *w, int64_t v);
/* A REAL as text that always reads back to the same double: what %.15g
 * prints when that is exact (then identical to sqlite3's own 15-digit
 * rendering), else %.17g; shaped like SQLite's: "1.0" not "1", "1.0e+20",
 * "Inf", "-Inf". */
int csv_writer_double(struct csv_writer *w, double v);
int csv_writer_base64(struct csv_writer *w, const void *data, size_t n);
int csv_writer_end_record(struct csv_writer *w);
/* Writes out the buffered bytes (does not fsync; with gzip, hands them to
 * the compressor, which may keep some). A full disk is AL_ERR_IO saying so. */
int csv_writer_flush(struct csv_writer *w);

/* Formats a double as csv_writer_double does; out must hold 32 bytes.
 * Returns the length. */
size_t csv_format_double(double v, char out[32]);

/* Length of the valid UTF-8 prefix of s (== n when all valid). Refuses
 * overlong forms, surrogates and code points above U+10FFFF. */
size_t csv_utf8_valid_prefix(const char *s, size_t n);

struct csv_counter {
	uint64_t records;
	int state;
	int after_cr;
	int capture;          /* still reading the first record */
	int header_ok;        /* header captured and valid */
	struct {
		char *ptr;
		size_t len, cap;
	} field;
	json_t *header;       /* array of strings while capturing */
};

int csv_counter_init(struct csv_counter *c);
/* Feeds bytes; never fails on malformed CSV (it counts leniently), only on
 * out-of-memory. */
int csv_counter_feed(struct csv_counter *c, const char *data, size_t n);
/* Ends the stream: *records gets the record count including the header
 * record; *header (may be NULL) a new array of the header's column names, or
 * NULL when the file is empty or its header is not valid UTF-8 / too large. */
int csv_counter_finish(struct csv_counter *c, uint64_t *records, json_t **header);
void csv_counter_free(struct csv_counter *c);

/* Streams a file through a counter. Refuses anything but a regular file
 * (opened with O_NOFOLLOW). */
int csv_count_file(const char *path, uint64_t *records, json_t **header);

#endif
