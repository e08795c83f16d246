// Linux interfaces that Swift's Glibc module does not expose: xattrs, ioctls built from
// function-like macros (FICLONE, btrfs snapshots), flock, fallocate, pipe2.
#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <linux/fs.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <spawn.h>

static inline unsigned long long shadowmover_makedev(unsigned int major, unsigned int minor) { return makedev(major, minor); }
static inline unsigned int shadowmover_major(unsigned long long dev) { return major(dev); }
static inline unsigned int shadowmover_minor(unsigned long long dev) { return minor(dev); }

// glibc declares these three only under _GNU_SOURCE, which would make this module's system types
// differ from Swift's Glibc module's; they are in every glibc since 2.10, 2.9 and 2.34.
extern int fallocate(int fd, int mode, off_t offset, off_t len);
extern int pipe2(int fds[2], int flags);
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);

/// A pipe whose ends are close-on-exec from the start (no other thread's child can inherit them).
static inline int shadowmover_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

/// Closes every descriptor from `from` up in a posix_spawn child (glibc 2.34).
static inline int shadowmover_spawn_closefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

/// FICLONE: make `dest` share `src`'s extents (reflink). Returns 0 or -1 with errno.
static inline int shadowmover_ficlone(int dest, int src) { return ioctl(dest, FICLONE, src); }

/// Creates a snapshot of the subvolume open as `source` named `name` in the directory open as `destDir`.
static inline int shadowmover_btrfs_snapshot(int source, int destDir, const char *name, int readOnly) {
    struct btrfs_ioctl_vol_args_v2 args;
    memset(&args, 0, sizeof(args));
    args.fd = source;
    args.flags = readOnly ? BTRFS_SUBVOL_RDONLY : 0;
    strncpy(args.name, name, BTRFS_SUBVOL_NAME_MAX);
    return ioctl(destDir, BTRFS_IOC_SNAP_CREATE_V2, &args);
}

/// Deletes the subvolume (snapshot) `name` in the directory open as `parentDir`.
static inline int shadowmover_btrfs_delete(int parentDir, const char *name) {
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof(args));
    strncpy(args.name, name, BTRFS_PATH_NAME_MAX);
    return ioctl(parentDir, BTRFS_IOC_SNAP_DESTROY, &args);
}

static inline long shadowmover_statfs_type(const char *path) {
    struct statfs s;
    if (statfs(path, &s) != 0) return -1;
    return (long)s.f_type;
}

static inline int shadowmover_flock(int fd, int operation) { return flock(fd, operation); }
static const int SHADOWMOVER_LOCK_EX = LOCK_EX;
static const int SHADOWMOVER_LOCK_SH = LOCK_SH;
static const int SHADOWMOVER_LOCK_NB = LOCK_NB;
static const int SHADOWMOVER_LOCK_UN = LOCK_UN;

