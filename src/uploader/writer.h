/*
 * writer.h - appends a stream of bytes to a file with the writes overlapped:
 * the caller (a connection thread, busy receiving and hashing) fills a
 * buffer while a thread of the writer's own writes the previous ones, in
 * order. On a file opened O_DIRECT every write is aligned (offset, length,
 * memory: UPLOAD_DIRECT_ALIGN) and bypasses the page cache; the last,
 * partial block is written padded when the caller syncs and the file cut back
 * to its real length, and that block is kept to be written again whole.
 *
 * What it promises: bytes reach the file in the order appended; after
 * writer_sync returns AL_OK, every byte appended is in the file, the file is
 * exactly writer_offset() long, and both are durable (fdatasync). An error of
 * the thread (ENOSPC, EIO) is sticky: every later call returns it.
 *
 * Memory: WRITER_BUFFERS buffers of WRITER_BUFFER_SIZE bytes, whatever the
 * size of the stream. The thread is started on the first full buffer, so a
 * small upload costs none.
 *
 * Ownership: the writer borrows fd (the caller closes it after
 * writer_close). Not thread-safe: one caller thread.
 */
#ifndef AL_UPLOADER_WRITER_H
#define AL_UPLOADER_WRITER_H

#include <stddef.h>
#include <stdint.h>

#define WRITER_BUFFER_SIZE ((size_t)1 << 20)
#define WRITER_BUFFERS 3
/* Without O_DIRECT: writeback is started every this many bytes, so that
 * the fdatasync of a sync waits for little. */
#define WRITER_WRITEBACK_BYTES ((uint64_t)8 << 20)

struct writer;

/* Appending at `offset`. With `direct`, offset may be unaligned: `prefix`
 * must then hold the prefix_len = offset % UPLOAD_DIRECT_ALIGN bytes of the
 * file before it (they are written again with the block). */
int writer_open(struct writer **out, int fd, int direct, uint64_t offset, const void *prefix, size_t prefix_len);
/* Waits for the thread and frees everything. Bytes not synced may or may
 * not be in the file. NULL-safe. */
void writer_close(struct writer *w);

int writer_append(struct writer *w, const void *data, size_t len);
int writer_sync(struct writer *w);
/* Forgets what was appended after `offset` (at or before the last sync):
 * cuts the file there and appends from it again (prefix as for open). */
int writer_reset(struct writer *w, uint64_t offset, const void *prefix, size_t prefix_len);
/* The offset the next byte appended will have. */
uint64_t writer_offset(const struct writer *w);

#endif
