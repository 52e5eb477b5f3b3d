/* Whole reads and writes on a file descriptor (fdio.h). */
#include "core/fdio.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

/* One call moves at most this much (Linux moves at most about 2 GiB). */
#define FDIO_CHUNK ((size_t)1 << 30)

int gd_fd_write_all(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n < FDIO_CHUNK ? n : FDIO_CHUNK);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -1;
    if (w == 0) {
      errno = EIO;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

ssize_t gd_fd_read_full(int fd, void *buf, size_t n) {
  uint8_t *p = buf;
  size_t got = 0;
  while (got < n) {
    size_t want = n - got < FDIO_CHUNK ? n - got : FDIO_CHUNK;
    ssize_t r = read(fd, p + got, want);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}
