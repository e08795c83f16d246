// A small C face on libfuse 3's high-level API for the read-only snapshot filesystem (`mount`):
// Swift sees plain callbacks with a context pointer and never fuse's headers, whose versioned
// functions are chosen by macros Swift cannot import.
#ifndef CFUSE_H
#define CFUSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

typedef int (*cfuse_fill_fn)(void *buffer, const char *name, const struct stat *st);

typedef struct cfuse_operations {
    void *context;
    int (*getattr)(void *context, const char *path, struct stat *st);
    int (*readlink)(void *context, const char *path, char *buffer, size_t size);
    int (*readdir)(void *context, const char *path, void *buffer, cfuse_fill_fn fill);
    int (*open)(void *context, const char *path, int flags, uint64_t *handle);
    int (*read)(void *context, uint64_t handle, char *buffer, size_t size, int64_t offset);
    int (*release)(void *context, uint64_t handle);
    int (*getxattr)(void *context, const char *path, const char *name, char *value, size_t size);
    int (*listxattr)(void *context, const char *path, char *list, size_t size);
} cfuse_operations;

/// Mounts read-only at `mountpoint` and serves requests on several threads until the filesystem is
/// unmounted or the process gets SIGINT, SIGTERM or SIGHUP; then unmounts. Returns 0 when it
/// served and unmounted, 1 when FUSE could not be set up, 2 when the mount failed (libfuse has
/// printed why on stderr).
int cfuse_serve(const char *mountpoint, const char *fsname, int allow_other, const cfuse_operations *operations);

#endif
