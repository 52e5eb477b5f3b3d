/*
 * Whole reads and writes on a file descriptor: the loops around read(2)
 * and write(2) that short counts and EINTR call for.
 */
#ifndef GD_CORE_FDIO_H
#define GD_CORE_FDIO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes of buf to fd, retrying on EINTR and short writes.
 * Returns 0, or -1 with errno set (EPIPE: the reader is gone). */
int gd_fd_write_all(int fd, const void *buf, size_t n);

/* Reads up to n bytes into buf, all of them unless end of file comes
 * first; retries on EINTR. Returns the bytes read (fewer than n only at end
 * of file), or -1 with errno set. */
ssize_t gd_fd_read_full(int fd, void *buf, size_t n);

#endif
