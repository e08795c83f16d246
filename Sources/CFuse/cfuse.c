#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include "cfuse.h"

// The kernel reads ahead of a FUSE file 128 KiB at a time unless told otherwise, which costs a
// request (and a wake-up of a thread here) per 128 KiB; sequential reads of large files run ~15 %
// faster with 1 MiB. The filesystem's device number comes from /proc/self/mountinfo: a stat of the
// mountpoint would wait for this process to answer it (so the path is resolved before mounting).
// The kernel sets the value when it reads our answer to its INIT request, so this runs once at the
// first request after that (the first getattr). Best effort: without sysfs the default stays.
static char mounted_at[PATH_MAX];
static pthread_once_t readahead_once = PTHREAD_ONCE_INIT;

static void raise_readahead(void) {
    const char *resolved = mounted_at;
    if (!resolved[0]) return;
    FILE *info = fopen("/proc/self/mountinfo", "r");
    if (!info) return;
    char line[4096], device[64] = "";
    while (fgets(line, sizeof line, info)) {
        char dev[64], point[PATH_MAX];
        if (sscanf(line, "%*s %*s %63s %*s %4095s", dev, point) == 2 && strcmp(point, resolved) == 0) {
            snprintf(device, sizeof device, "%s", dev);  // the last mount on that path is ours
        }
    }
    fclose(info);
    if (!device[0]) return;
    char path[128];
    snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", device);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs("1024", f);
    fclose(f);
}

static const cfuse_operations *operations(void) { return (const cfuse_operations *)fuse_get_context()->private_data; }

static void *sm_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    // A snapshot never changes: the kernel may keep pages, attributes and names as long as it likes.
    cfg->kernel_cache = 1;
    cfg->entry_timeout = 3600;
    cfg->attr_timeout = 3600;
    cfg->negative_timeout = 3600;
    return fuse_get_context()->private_data;
}

static int sm_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    pthread_once(&readahead_once, raise_readahead);
    return operations()->getattr(operations()->context, path, st);
}

static int sm_readlink(const char *path, char *buffer, size_t size) {
    return operations()->readlink(operations()->context, path, buffer, size);
}

struct fill_context {
    void *buffer;
    fuse_fill_dir_t filler;
};

static int sm_fill(void *context, const char *name, const struct stat *st) {
    struct fill_context *c = context;
    return c->filler(c->buffer, name, st, 0, 0);
}

static int sm_readdir(const char *path, void *buffer, fuse_fill_dir_t filler, off_t offset, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
    (void)offset;
    (void)fi;
    (void)flags;
    struct fill_context c = {buffer, filler};
    return operations()->readdir(operations()->context, path, &c, sm_fill);
}

static int sm_open(const char *path, struct fuse_file_info *fi) {
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
    uint64_t handle = 0;
    int rc = operations()->open(operations()->context, path, fi->flags, &handle);
    if (rc == 0) {
        fi->fh = handle;
        fi->keep_cache = 1;
    }
    return rc;
}

static int sm_read(const char *path, char *buffer, size_t size, off_t offset, struct fuse_file_info *fi) {
    (void)path;
    return operations()->read(operations()->context, fi->fh, buffer, size, (int64_t)offset);
}

static int sm_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    return operations()->release(operations()->context, fi->fh);
}

static int sm_getxattr(const char *path, const char *name, char *value, size_t size) {
    return operations()->getxattr(operations()->context, path, name, value, size);
}

static int sm_listxattr(const char *path, char *list, size_t size) {
    return operations()->listxattr(operations()->context, path, list, size);
}

int cfuse_serve(const char *mountpoint, const char *fsname, int allow_other, const cfuse_operations *ops) {
    char options[1024];
    snprintf(options, sizeof options, "ro,default_permissions,fsname=%s,subtype=shadowmover%s", fsname, allow_other ? ",allow_other" : "");
    char *argv[] = {"shadowmover", "-o", options, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    struct fuse_operations fo;
    memset(&fo, 0, sizeof fo);
    fo.init = sm_init;
    fo.getattr = sm_getattr;
    fo.readlink = sm_readlink;
    fo.readdir = sm_readdir;
    fo.open = sm_open;
    fo.read = sm_read;
    fo.release = sm_release;
    fo.getxattr = sm_getxattr;
    fo.listxattr = sm_listxattr;
    if (!realpath(mountpoint, mounted_at)) mounted_at[0] = 0;
    struct fuse *f = fuse_new(&args, &fo, sizeof fo, (void *)ops);
    if (!f) return 1;
    if (fuse_mount(f, mountpoint) != 0) {
        fuse_destroy(f);
        return 2;
    }
    struct fuse_session *se = fuse_get_session(f);
    fuse_set_signal_handlers(se);
    fuse_loop_mt(f, 0);
    fuse_remove_signal_handlers(se);
    fuse_unmount(f);
    fuse_destroy(f);
    return 0;
}
